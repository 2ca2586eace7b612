"""GPU check of ``--offload-train`` in the megatron backend (offload.py) and of PPO's critic on a GPU.

Run on a machine with one GPU (about 2 minutes):

    uv run python bench/gpu/offload_check.py

For each optimizer layout (megatron's plain mixed-precision optimizer, and ``--use-distributed-optimizer``) it trains
a ~0.2B Qwen2-shaped model in bf16 through ``MegatronTrainBackend`` twice on the same batches: once straight, once
offloaded between the steps as the loop does under ``--colocate`` (train, offload, send the weights, onload, train).
It prints the device memory around the offload and whether the offloaded run's second step and the weights it sent
equal the straight run's. Then PPO's critic (``init(role="critic")``): one critic step, offload, onload, another.
One JSON line per result; the last line is a summary with ``"ok"``.
"""

import gc
import json
import os
import tempfile
from pathlib import Path

SHAPE = dict(hidden_size=1024, num_layers=12, num_heads=16, num_kv_heads=4, intermediate_size=2816, vocab_size=32000)


class ChecksumReceiver:
    """Stands in for an engine's weight receiver: keeps each tensor's float64 sum, by HF name."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    def update_weights(self, named_tensors, weight_version: str) -> None:
        for name, tensor in named_tensors:
            self.sums[name] = float(tensor.double().sum())


def optimizer_checksum(optimizer) -> float:
    """The float64 sum of every tensor a megatron optimizer holds: its main parameters and its state."""
    import torch

    total = 0.0
    for part in getattr(optimizer, "chained_optimizers", [optimizer]):
        for group in part.optimizer.param_groups:
            total += sum(float(p.double().sum()) for p in group["params"])
        for state in part.optimizer.state.values():
            total += sum(float(v.double().sum()) for v in state.values() if torch.is_tensor(v))
    return total


def gib(num_bytes: int) -> float:
    return round(num_bytes / 2**30, 3)


def main() -> None:
    import torch

    from slime.config.arguments import parse_args
    from slime.types import TrainBatch
    from slime_megatron.backend import MegatronTrainBackend
    from slime_megatron.hf_config import HFModelConfig
    from slime_testkit.tiny_model import build_tiny_model

    if not torch.cuda.is_available():
        raise SystemExit("this check needs a GPU")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    workdir = Path(tempfile.mkdtemp(prefix="slime-offload-"))
    model_dir = build_tiny_model(workdir / "model", arch="qwen2", tie_word_embeddings=True, **SHAPE)
    hf = HFModelConfig.load(model_dir)
    generator = torch.Generator().manual_seed(0)
    samples, seq_len, response = 16, 512, 384
    batch = TrainBatch(
        tokens=torch.randint(0, hf.vocab_size, (samples, seq_len), generator=generator).tolist(),
        response_lengths=[response] * samples,
        loss_masks=[[1] * response] * samples,
        rewards=torch.randn(samples, generator=generator).tolist(),
        raw_rewards=[0.0] * samples,
        truncated=[False] * samples,
        sample_indices=list(range(samples)),
    )

    def backend_for(port: int, *flags: str, role: str = "actor") -> MegatronTrainBackend:
        os.environ["MASTER_PORT"] = str(port)  # used by the first backend only: the others reuse its process group
        args = parse_args(
            [
                "--hf-checkpoint", str(model_dir), "--rollout-batch-size", "2", "--n-samples-per-prompt", "8",
                "--global-batch-size", str(samples), "--micro-batch-size", "4", "--actor-num-gpus-per-node", "1",
                "--bf16", "--lr", "1e-5", "--no-gradient-accumulation-fusion", *flags,
            ]
        )  # fmt: skip
        backend = MegatronTrainBackend()
        backend.init(args, rank=0, world_size=1, role=role)
        return backend

    def release(backend: MegatronTrainBackend) -> None:
        backend.trainer = None  # the next backend reuses the process group and replaces the parallel layout
        gc.collect()
        torch.cuda.empty_cache()

    results, ok, port = [], True, 29600
    for layout, flags in (("plain", ()), ("distributed_optimizer", ("--use-distributed-optimizer",))):
        straight = backend_for(port, *flags)
        straight.train(0, batch)
        expected = straight.train(1, batch)[0]
        release(straight)

        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        offloaded = backend_for(port, *flags)
        offloaded.train(0, batch)
        before_weights, sent = ChecksumReceiver(), ChecksumReceiver()
        offloaded.update_weights(before_weights, "1")
        optimizer_before = optimizer_checksum(offloaded.trainer.trainable.optimizer)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated() - baseline
        offloaded.offload()
        after = torch.cuda.memory_allocated() - baseline
        offloaded.update_weights(sent, "2")  # while offloaded, as the loop's weight update
        after_send = torch.cuda.memory_allocated() - baseline
        offloaded.onload()
        optimizer_after = optimizer_checksum(offloaded.trainer.trainable.optimizer)
        second = offloaded.train(1, batch)[0]
        release(offloaded)

        # Exact: the same tensors went to the host and back. Close: another model instance on the same data
        # (GPU kernels need not be bitwise deterministic).
        exact = sent.sums == before_weights.sums and len(sent.sums) > 0 and optimizer_after == optimizer_before
        close = all(abs(second[k] - expected[k]) <= 1e-3 * max(abs(expected[k]), 1e-3) for k in ("loss", "grad_norm"))
        freed = after < 0.1 * before and after_send <= after + 2**20
        ok &= exact and close and freed
        result = {
            "layout": layout,
            "allocated_gib_before_offload": gib(before),
            "allocated_gib_after_offload": gib(after),
            "allocated_gib_after_sending_weights": gib(after_send),
            "weights_and_optimizer_state_exactly_restored": exact,
            "second_step": {k: second[k] for k in ("loss", "grad_norm")},
            "straight_run_second_step": {k: expected[k] for k in ("loss", "grad_norm")},
            "ok": exact and close and freed,
        }
        results.append(result)
        print(json.dumps(result), flush=True)

    critic = backend_for(port, "--advantage-estimator", "ppo", role="critic")
    steps, values = critic.train_critic(0, batch)
    critic.offload()
    critic.onload()
    more, _ = critic.train_critic(1, batch)
    critic_ok = len(values) == samples and all(len(v) == response for v in values.values())
    critic_ok &= more[0]["value_loss"] < steps[0]["value_loss"] * 10 and more[0]["grad_norm"] > 0
    ok &= critic_ok
    critic_report = {
        "value_loss": [steps[0]["value_loss"], more[0]["value_loss"]],
        "grad_norm": [steps[0]["grad_norm"], more[0]["grad_norm"]],
        "values_reported": len(values),
        "value_lengths": sorted({len(v) for v in values.values()}),
        "ok": critic_ok,
    }
    print(json.dumps({"critic": critic_report}), flush=True)
    print(json.dumps({"summary": {"device": torch.cuda.get_device_name(), "ok": bool(ok)}}), flush=True)


if __name__ == "__main__":
    main()
