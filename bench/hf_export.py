"""The trainer's half of a weight update: the megatron model as an HF state dict on rank 0, against the round trip
through ``torch.distributed.gather_object`` it made before (issue 23).

One megatron backend (world size 1, gloo, CPU) of issue 23's 10M model (hidden 384, 6 layers) or the 1M one;
calls alternate between the sides, the first of each is warm-up and not counted:

* ``after``: ``slime_megatron.hf_mapping.gather_hf_state_dict`` (one pipeline stage: rank 0 keeps its tensors);
* ``before``: the same export, then every stage's tensors pickled through ``gather_object`` to rank 0, as every
  update did up to the twentieth session.

glibc's malloc settings change the before side's cost (its pickle buffers grow by ``realloc``); run it both ways:

    python bench/hf_export.py [--sizes 1M 10M-i23] [--calls 8]
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python bench/hf_export.py
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit_row, set_bench_env, spread, this_command, verdict

SIZES = {"1M": (128, 4), "10M-i23": (384, 6)}  # (hidden size, layers), as bench/train_vs_torch.py


def gather_through_pickles(model, hf) -> dict | None:
    """The before side: the export, then gather_object of the stage to rank 0 (rank 0's own stage included)."""
    import torch.distributed as dist

    from slime_megatron.hf_mapping import export_hf_weights

    stage = dict(export_hf_weights(model, hf))
    parts: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(stage, parts, dst=0)
    if parts is None:
        return None
    merged: dict = {}
    for part in parts:
        merged.update(part or {})
    return merged


def bench_size(workdir: Path, size: str, calls: int) -> None:
    from slime.config.arguments import parse_args
    from slime_megatron.backend import MegatronTrainBackend
    from slime_testkit.tiny_model import build_tiny_model

    hidden, layers = SIZES[size]
    model_dir = build_tiny_model(workdir / size, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)
    args = parse_args(
        ["--hf-checkpoint", str(model_dir), "--train-backend", "megatron", "--actor-num-gpus-per-node", "1"]
    )
    backend = MegatronTrainBackend()
    backend.init(args, rank=0, world_size=1)
    from slime_megatron.hf_mapping import gather_hf_state_dict  # after init: it sets megatron up for CPU first

    trainer = backend._require_trainer()
    sides = {
        "after": lambda: gather_hf_state_dict(trainer.trainable.model, trainer.hf),
        "before": lambda: gather_through_pickles(trainer.trainable.model, trainer.hf),
    }
    times: dict[str, list[float]] = {side: [] for side in sides}
    for call in range(calls):
        for side in list(sides)[call % 2 :] + list(sides)[: call % 2]:  # alternate who goes first
            start = time.perf_counter()
            state = sides[side]()
            times[side].append(time.perf_counter() - start)
            del state
    megabytes = sum(t.numel() * t.element_size() for t in sides["after"]().values()) / 1e6
    steady = {side: values[1:] for side, values in times.items()}
    speedups = [b / a for a, b in zip(steady["after"], steady["before"], strict=True)]
    malloc = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_")) or "glibc's defaults"
    print(f"{size}: {megabytes:.1f} MB of weights; malloc: {malloc}")
    for side in sides:
        print(f"  {side:6}: s/call {[round(t, 4) for t in times[side]]}", flush=True)
    emit_row(
        f"weight export, {size} model ({megabytes:.1f} MB), malloc {malloc}: HF state dict on rank 0, kept (after) vs "
        "pickled through gather_object (before)",
        f"after {spread(steady['after'])} s; before {spread(steady['before'])} s",
        f"after/before speed {spread(speedups)}",
        verdict("> 1.0x", speedups, lambda r: r > 1.0),
        this_command(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M-i23"], choices=list(SIZES))
    parser.add_argument("--calls", type=int, default=8, help="calls per side (the first is warm-up)")
    options = parser.parse_args()
    if len(options.sizes) > 1:  # megatron's parallel state is set up once per process: one process per size
        for size in options.sizes:
            subprocess.run([sys.executable, __file__, "--sizes", size, "--calls", str(options.calls)], check=True)
        return
    set_bench_env()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29543")
    bench_size(Path(tempfile.mkdtemp(prefix="slime-bench-export-")), options.sizes[0], options.calls)


if __name__ == "__main__":
    main()
