"""Helpers shared by the megatron tests and by parallel_worker.py (which runs them in several processes)."""

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from slime.config.arguments import parse_args
from slime.types import RaggedArray, Sample, TrainBatch
from slime_testkit.tiny_model import (
    build_tiny_glm4_model,
    build_tiny_glm4_moe_model,
    build_tiny_model,
    build_tiny_moe_model,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_single_process_world() -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


def destroy_world() -> None:
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def build_random_model(out_dir: Path, arch: str, vocab_size: int | None = 600, **moe) -> Path:
    """A tiny HF model whose every tensor is random, so a mix-up of any two tensors changes the outputs.

    (Freshly initialised norms are all ones and biases all zeros: swapping them would go unnoticed.) The default
    vocabulary, 600, is not a multiple of 128, so megatron's vocabulary padding is exercised. ``moe``: arguments of
    ``build_tiny_moe_model`` for arch qwen3_moe, of ``build_tiny_glm4_moe_model`` for glm4_moe.
    """
    if arch == "qwen3_moe":  # untied, as Qwen3-30B-A3B
        build_tiny_moe_model(out_dir, tie_word_embeddings=False, vocab_size=vocab_size, seed=0, **moe)
    elif arch == "glm4_moe":  # untied, as GLM-4.5
        build_tiny_glm4_moe_model(out_dir, vocab_size=vocab_size, seed=0, **moe)
    elif arch == "glm4":  # untied, as GLM-4-9B
        build_tiny_glm4_model(out_dir, vocab_size=vocab_size, seed=0)
    else:
        build_tiny_model(out_dir, arch=arch, tie_word_embeddings=arch != "llama", vocab_size=vocab_size, seed=0)
    path = Path(out_dir) / "model.safetensors"
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for name, tensor in sorted(load_file(path).items()):
        noise = torch.randn(tensor.shape, generator=generator)
        tensors[name] = (1 + 0.1 * noise) if name.endswith("norm.weight") else 0.1 * noise
    save_file(tensors, path, metadata={"format": "pt"})
    return Path(out_dir)


def make_args(hf_dir: Path, *extra: str) -> argparse.Namespace:
    """slime's flags for an RL run on the tiny model: 8 samples per rollout in 2 optimizer steps, KL to a reference."""
    return parse_args(
        [
            "--hf-checkpoint", str(hf_dir),
            "--rollout-batch-size", "4", "--n-samples-per-prompt", "2",
            "--global-batch-size", "4", "--micro-batch-size", "1",
            "--actor-num-gpus-per-node", "1",
            "--lr", "1e-3", "--weight-decay", "0.1",
            "--use-kl-loss", "--kl-loss-coef", "0.1", "--kl-loss-type", "low_var_kl",
            "--entropy-coef", "0.01",
            "--rollout-temperature", "0.8",
            *extra,
        ]
    )  # fmt: skip


def make_batch(vocab_size: int, num_samples: int = 8, seed: int = 0) -> TrainBatch:
    """Samples of different lengths, some response tokens masked out, rewards of both signs."""
    generator = torch.Generator().manual_seed(seed)
    tokens, response_lengths, loss_masks = [], [], []
    for i in range(num_samples):
        prompt, response = 3 + i % 4, 2 + (i * 3) % 5
        tokens.append(torch.randint(3, vocab_size, (prompt + response,), generator=generator).tolist())
        response_lengths.append(response)
        loss_masks.append([0 if (i + t) % 4 == 3 else 1 for t in range(response)])
    rewards = [1.0 if i % 3 == 0 else 0.0 for i in range(num_samples)]
    return TrainBatch(  # per-token data as the rollout manager sends it
        tokens=RaggedArray.from_lists(tokens, "i"),
        response_lengths=response_lengths,
        loss_masks=RaggedArray.from_lists(loss_masks, "b"),
        rewards=[r - 0.25 for r in rewards],
        raw_rewards=rewards,
        truncated=[False] * num_samples,
        sample_indices=list(range(num_samples)),
    )


def engine_rollout(model: Path, workdir: Path, *flags: str, num_prompts: int, max_new_tokens: int) -> tuple:
    """``num_prompts`` random prompts sampled (temperature 1) by a real SGLang CPU engine of their own serving ``model``
    (``flags``: more slime flags for it), and the samples as a ``TrainBatch`` (all response tokens trained, rewards 0)."""
    import asyncio

    sys.path.insert(0, str(Path(__file__).parents[1] / "sglang"))
    from engine_checks import one_cpu_engine

    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 600, (4 + i % 5,), generator=generator).tolist() for i in range(num_prompts)]
    params = {"temperature": 1.0, "max_new_tokens": max_new_tokens, "ignore_eos": True}
    with one_cpu_engine(model, workdir, *flags) as engine:

        async def rollout() -> list[Sample]:
            return await asyncio.gather(
                *(engine.generate(Sample(tokens=p, index=i), params) for i, p in enumerate(prompts))
            )

        samples = asyncio.run(rollout())
    n = len(samples)
    batch = TrainBatch(
        tokens=RaggedArray.from_lists([s.tokens for s in samples], "i"),
        response_lengths=[s.response_length for s in samples],
        loss_masks=RaggedArray.from_lists([[1] * s.response_length for s in samples], "b"),
        rewards=[0.0] * n,
        raw_rewards=[0.0] * n,
        truncated=[False] * n,
        sample_indices=list(range(n)),
    )
    return samples, batch


def assert_slime_convert_round_trips(hf_dir: Path, workdir: Path) -> None:
    """``slime convert hf-to-megatron`` then ``megatron-to-hf`` give back ``hf_dir``'s tensors bit for bit and its
    config.json."""
    from slime import plugins

    convert = plugins.registry("commands").get("convert")  # `slime convert ...`
    assert convert(["hf-to-megatron", str(hf_dir), str(workdir / "megatron")]) == 0
    assert convert(["megatron-to-hf", str(workdir / "megatron"), str(hf_dir), str(workdir / "hf")]) == 0
    original, converted = load_file(hf_dir / "model.safetensors"), load_file(workdir / "hf" / "model.safetensors")
    assert sorted(converted) == sorted(original)
    assert all(torch.equal(converted[name], original[name]) for name in original)
    assert json.loads((workdir / "hf" / "config.json").read_text()) == json.loads((hf_dir / "config.json").read_text())


def make_trainer(args: argparse.Namespace):
    from slime_megatron.trainer import MegatronTrainer

    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return MegatronTrainer(args, rank, world_size, on_cpu=True)


def train_rollouts(trainer, batch: TrainBatch, rollout_ids: range) -> list[dict[str, float]]:
    """Every step's metrics over these rollouts (the same batch each time)."""
    return [metrics for rollout_id in rollout_ids for metrics in trainer.train(rollout_id, batch)]


def assert_log_probs_equal_hf(log_probs: list[torch.Tensor], hf_dir: Path, batch: TrainBatch) -> None:
    """Each sample's response log-probs equal HF transformers' (fp32) on the same tokens, at make_args' rollout
    temperature 0.8, within 1e-5."""
    from transformers import AutoModelForCausalLM

    from slime.rl.logprobs import log_probs_from_logits

    reference = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    for i, (tokens, response) in enumerate(zip(batch.tokens, batch.response_lengths, strict=True)):
        with torch.no_grad():
            logits = reference(torch.tensor(tokens, dtype=torch.long)[None]).logits[0]
        positions = slice(len(tokens) - response - 1, len(tokens) - 1)
        expected = log_probs_from_logits(logits[positions], torch.tensor(tokens[-response:], dtype=torch.long), 0.8)
        assert (log_probs[i] - expected).abs().max().item() < 1e-5, i


SPEC_CALLS: list[int] = []


def custom_layer_spec(args: argparse.Namespace, config, vp_stage):
    """A ``--spec megatron_helpers custom_layer_spec`` for the tests: megatron-core's local spec, call recorded."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    SPEC_CALLS.append(config.num_layers)
    return get_gpt_layer_local_spec(qk_layernorm=args.qk_layernorm, normalization=args.normalization)


def slime_policy_loss(args: argparse.Namespace, batch: dict, logits: torch.Tensor, sum_of_sample_mean) -> tuple:
    """A custom loss written as for slime (``--custom-loss-function-path megatron_helpers.slime_policy_loss``):
    make_args' policy loss (PPO clip, entropy bonus, KL loss) recomputed from the packed logits with slime's helper,
    reporting the built-in policy loss's metrics, so that it trains exactly like it."""
    from slime.backends.megatron_utils.loss import get_log_probs_and_entropy
    from slime.rl.kl import compute_approx_kl

    _, outputs = get_log_probs_and_entropy(
        logits,
        args=args,
        unconcat_tokens=batch["unconcat_tokens"],
        total_lengths=batch["total_lengths"],
        response_lengths=batch["response_lengths"],
        with_entropy=True,
    )
    log_probs = torch.cat(outputs["log_probs"])
    old_log_probs = torch.cat(batch["log_probs"])
    advantages = torch.cat(batch["advantages"])
    ratio = (log_probs - old_log_probs).exp()
    unclipped = -ratio * advantages
    clipped = -ratio.clamp(1 - args.eps_clip, 1 + args.eps_clip_high) * advantages
    pg_loss = sum_of_sample_mean(torch.maximum(unclipped, clipped))
    entropy_loss = sum_of_sample_mean(torch.cat(outputs["entropy"]))
    kl = compute_approx_kl(log_probs, torch.cat(batch["ref_log_probs"]), args.kl_loss_type)
    kl_loss = sum_of_sample_mean(kl)
    loss = pg_loss - args.entropy_coef * entropy_loss + args.kl_loss_coef * kl_loss
    metrics = {
        "loss": loss,
        "pg_loss": pg_loss,
        "pg_clipfrac": sum_of_sample_mean((clipped > unclipped).float()),
        "ppo_kl": sum_of_sample_mean(old_log_probs - log_probs),
        "entropy_loss": entropy_loss,
        "kl_loss": kl_loss,
    }
    return loss, {name: value.detach() for name, value in metrics.items()}


WORKER = Path(__file__).parent / "parallel_worker.py"


def run_two_ranks(hf_dir: Path, tmp_path: Path, *worker_args: str) -> dict:
    """parallel_worker.py's results from two gloo processes (``worker_args``: ``moe`` or ``glm4_moe`` for its MoE
    layouts)."""
    results, port = tmp_path / "results.json", str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(hf_dir), str(tmp_path / "ckpt"), str(results), *worker_args],
            env={**os.environ, "RANK": str(rank), "MASTER_PORT": port},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=480)[0])
    finally:
        for proc in procs:
            proc.kill()
    for rank, (proc, output) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{output[-6000:]}"
    return json.loads(results.read_text())


def assert_same_steps(got: list[dict], expected: list[dict], what: str) -> None:
    assert len(got) == len(expected), what
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.keys() == e.keys(), what
        for name in e:
            # 1e-5 absolute, or relative for large values (grad norms): ranks sum in another order.
            close = pytest.approx(e[name], rel=1e-5, abs=1e-5)
            assert g[name] == close, f"{what}: step {step} {name}: {g[name]} != {e[name]}"


def megatron_model(hf_dir: Path):
    """The HF checkpoint at ``hf_dir`` as a one-process megatron model in eval mode, with its HF config."""
    from slime_megatron.hf_config import HFModelConfig
    from slime_megatron.hf_mapping import load_hf_weights
    from slime_megatron.megatron_flags import default_args
    from slime_megatron.model import build_model
    from slime_megatron.parallel import init_parallel

    init_parallel(rank=0, world_size=1, on_cpu=True)
    hf = HFModelConfig.load(hf_dir)
    _, _, model = build_model(default_args(str(hf_dir)), hf, world_size=1, on_cpu=True)
    load_hf_weights(model, hf, hf_dir)
    return hf, model.eval()
