"""Training on CPU: the megatron backend's RL step against a plain PyTorch step of the same HF model (goal <= 1.2x).

Both sides train the same randomly initialised Qwen2-shaped model (build_tiny_model, fp32) on the same batch:
64 samples of 64 tokens (48 of them response, all in the loss), random token ids and advantages, one optimizer step
per call in micro-batches of 16, Adam(W) lr 1e-6, no weight decay, no KL, no reference model.

* ``megatron``: ``MegatronTrainBackend.train`` (Megatron-core GPT model, DDP wrapper, megatron optimizer, slime's
  GRPO policy loss), in this process on gloo (world size 1), exactly as a train actor runs it;
* ``torch``: the ``transformers`` model: forward, response log-probs, ``-(advantage * log_prob)`` mean, backward
  per micro-batch, then one ``torch.optim.AdamW`` step.

``--work issue23`` is one issue-23 rollout's batch instead: 128 samples of 64 tokens (32 of them response), one
micro-batch (``--sizes 10M-i23`` is that issue's 10M model: hidden 384, 6 layers).

Steps alternate between the sides; the first step of each is warm-up and not counted. ``--before-uncached-rope``
adds a third side: the same megatron backend with megatron-core's own RoPE function (cos and sin taken per call),
the "before" of ``slime_megatron.rope``.

    python bench/train_vs_torch.py [--sizes 1M 10M] [--steps 5] [--work issue23] [--before-uncached-rope]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from common import emit_row, load_average, set_bench_env, spread, this_command, verdict

# (hidden size, layers), as the other benches; 10M-i23 is issue 23's 10M shape (bench/e2e_vs_trl.py --model 10m).
SIZES = {"1M": (128, 4), "10M": (256, 10), "30M": (512, 8), "10M-i23": (384, 6)}


class Work(NamedTuple):
    samples: int
    seq_len: int
    response_len: int
    micro_batch: int


# "issue23": the batch of one issue-23 rollout (128 samples, 32 new tokens, all in one micro-batch).
WORKS = {"default": Work(64, 64, 48, 16), "issue23": Work(128, 64, 32, 128)}


def torch_step(model, optimizer, tokens, advantages, work: Work) -> None:
    import torch

    optimizer.zero_grad(set_to_none=True)
    micro, response = work.micro_batch, work.response_len
    for start in range(0, work.samples, micro):
        ids = tokens[start : start + micro]
        logits = model(input_ids=ids).logits[:, -response - 1 : -1]
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, -response:, None]).squeeze(-1)
        loss = -(advantages[start : start + micro, None] * log_probs).mean() * micro / work.samples
        loss.backward()
    optimizer.step()


def megatron_rope_step(backend, step: int, batch) -> None:
    """One megatron step with megatron-core's own RoPE function in place of slime_megatron.rope's."""
    from megatron.core.models.common.embeddings import rope_utils

    from slime_megatron import rope

    rope_utils._apply_rotary_pos_emb_bshd = rope._megatron_bshd
    try:
        backend.train(step, batch)
    finally:
        rope.install()


def bench_size(workdir: Path, size: str, steps: int, work: Work, before_rope: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from slime.config.arguments import parse_args
    from slime.types import RaggedArray, TrainBatch
    from slime_megatron.backend import MegatronTrainBackend
    from slime_testkit.tiny_model import build_tiny_model

    hidden, layers = SIZES[size]
    model_dir = build_tiny_model(workdir / size, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)
    args = parse_args(
        [
            "--hf-checkpoint", str(model_dir), "--train-backend", "megatron",
            "--rollout-batch-size", str(work.samples // 8), "--n-samples-per-prompt", "8",
            "--global-batch-size", str(work.samples), "--micro-batch-size", str(work.micro_batch),
            "--actor-num-gpus-per-node", "1", "--lr", "1e-6", "--weight-decay", "0.0",
            "--advantage-estimator", "grpo",
        ]
    )  # fmt: skip
    backend = MegatronTrainBackend()
    backend.init(args, rank=0, world_size=1)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
    params = sum(p.numel() for p in model.parameters())

    generator = torch.Generator().manual_seed(0)
    samples, response_len = work.samples, work.response_len
    tokens = torch.randint(0, model.config.vocab_size, (samples, work.seq_len), generator=generator)
    rewards = torch.randn(samples, generator=generator)
    batch = TrainBatch(
        tokens=RaggedArray.from_lists(tokens.tolist(), "i"),  # as the rollout manager sends it
        response_lengths=[response_len] * samples,
        loss_masks=RaggedArray.from_lists([[1] * response_len] * samples, "b"),
        rewards=rewards.tolist(),
        raw_rewards=rewards.tolist(),
        truncated=[False] * samples,
        sample_indices=list(range(samples)),
    )
    advantages = (rewards.view(-1, 8) - rewards.view(-1, 8).mean(1, keepdim=True)).flatten()

    sides = ["megatron", "torch"] + (["megatron-rope"] if before_rope else [])
    times: dict[str, list[float]] = {side: [] for side in sides}
    loads = []
    for step in range(steps):
        loads.append(load_average())
        for side in sides[step % len(sides) :] + sides[: step % len(sides)]:  # rotate who goes first
            start = time.perf_counter()
            if side == "megatron":
                backend.train(step, batch)
            elif side == "megatron-rope":
                megatron_rope_step(backend, step, batch)
            else:
                torch_step(model, optimizer, tokens, advantages, work)
            times[side].append(time.perf_counter() - start)
    tokens_per_step = samples * work.seq_len
    steady = {side: values[1:] for side, values in times.items()}
    rates = {side: [tokens_per_step / t for t in values] for side, values in steady.items()}
    ratios = [m / t for m, t in zip(steady["megatron"], steady["torch"], strict=True)]
    print(f"{size}: {params / 1e6:.2f}M parameters; load {min(loads)}-{max(loads)}; {torch.get_num_threads()} threads")
    for side in times:
        print(f"  {side:13}: s/step {[round(t, 3) for t in times[side]]}; {spread(rates[side])} tok/s", flush=True)
    emit_row(
        f"training, {size} model, {samples} x {work.seq_len} tokens, micro-batch {work.micro_batch}: megatron backend "
        "vs plain PyTorch (HF model + AdamW)",
        f"megatron {spread(rates['megatron'])} tok/s ({spread(steady['megatron'])} s/step); torch "
        f"{spread(rates['torch'])} tok/s ({spread(steady['torch'])} s/step)",
        f"megatron/torch time per step {spread(ratios)}",
        verdict("<= 1.2x", ratios, lambda r: r <= 1.2),
        this_command(),
    )
    if before_rope:
        speedups = [b / a for a, b in zip(steady["megatron"], steady["megatron-rope"], strict=True)]
        emit_row(
            f"training, {size} model: cos/sin taken once (slime_megatron.rope) vs per call (megatron-core's RoPE)",
            f"after {spread(steady['megatron'])} s/step; before {spread(steady['megatron-rope'])} s/step",
            f"after/before speed {spread(speedups)}",
            verdict("> 1.0x", speedups, lambda r: r > 1.0),
            this_command(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M"], choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=5, help="steps per side (the first is warm-up)")
    parser.add_argument("--work", default="default", choices=list(WORKS), help="the batch (see above)")
    parser.add_argument("--before-uncached-rope", action="store_true", help="also time megatron-core's own RoPE")
    options = parser.parse_args()
    if len(options.sizes) > 1:  # megatron's parallel state is set up once per process: one process per size
        extra = ["--work", options.work] + (["--before-uncached-rope"] if options.before_uncached_rope else [])
        for size in options.sizes:
            command = [sys.executable, __file__, "--sizes", size, "--steps", str(options.steps), *extra]
            subprocess.run(command, check=True)
        return
    set_bench_env()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-train-"))
    for size in options.sizes:
        bench_size(workdir, size, options.steps, WORKS[options.work], options.before_uncached_rope)


if __name__ == "__main__":
    main()
