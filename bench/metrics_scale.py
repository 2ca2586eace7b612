"""How long computing and logging one rollout's metrics takes, from 1k to 100k samples (goal: 100k in < 5 s).

Each size builds a synthetic rollout shaped like a real one (8 samples per prompt, responses of 1-1024 tokens, a
tenth with tool-output tokens, 2% looping responses over 10k characters, per-token training tensors), then times
``log_rollout`` (every rollout/multi_turn/passrate/perf metric, the train-tensor means) and ``log_eval`` (the same
samples as one eval set) with the JSONL, TensorBoard and W&B (offline) sinks all on. Starting and finishing the
sinks is a once-per-run cost, printed separately.

    uv run python bench/metrics_scale.py [--sizes 1000 10000 100000]
"""

import argparse
import os
import platform
import random
import tempfile
import time

import numpy
import torch

from slime.config.arguments import build_parser
from slime.metrics import finish_metrics, init_metrics, log_eval, log_rollout
from slime.metrics.rollout import train_data_means
from slime.types import Sample, Status

N_PER_PROMPT = 8
WORDS = "the model thinks step by step about the answer and checks it again ".split()


def build_rollout(n_samples: int, seed: int = 0) -> tuple[list[Sample], dict, list]:
    """Samples as a rollout returns them: random token ids below a 151k vocabulary, the engine's log-prob of every
    response token, a loss mask only on multi-turn (tool) samples; plus per-token training tensors."""
    rng = random.Random(seed)
    ids = numpy.random.default_rng(seed)
    text = " ".join(rng.choice(WORDS) for _ in range(2000))  # ~10k varied characters to slice responses from
    looping = "I will check again. " * 700  # 14k characters that compress far more than 10x
    samples, log_probs, masks = [], [], []
    for index in range(n_samples):
        length = rng.randint(1, 1024)
        tool = rng.random() < 0.1
        mask = [1] * length if not tool else [1] * (length // 2) + [0] * (length - length // 2)
        sample = Sample(
            group_index=index // N_PER_PROMPT,
            index=index,
            tokens=ids.integers(0, 151_000, 64 + length).tolist(),
            response=looping if rng.random() < 0.02 else text[: 4 * length],
            response_length=length,
            reward=float(rng.random() < 0.5),
            loss_mask=mask if tool else None,
            rollout_log_probs=(-ids.random(length)).tolist(),
            status=Status.TRUNCATED if length == 1024 else Status.COMPLETED,
            metadata={"round_number": 2 if tool else 1},
        )
        samples.append(sample)
        log_probs.append(torch.full((length,), -0.5))
        masks.append(torch.tensor(mask, dtype=torch.int32))
    train_data = {
        "rewards": [s.reward - 0.5 for s in samples],
        "log_probs": log_probs,
        "ref_log_probs": log_probs,
        "advantages": log_probs,
    }
    return samples, train_data, masks


def bench(n_samples: int, out_dir: str) -> None:
    samples, train_data, masks = build_rollout(n_samples)
    args = build_parser().parse_args(
        [
            "--output-dir", out_dir,
            "--rollout-batch-size", str(n_samples // N_PER_PROMPT),
            "--n-samples-per-prompt", str(N_PER_PROMPT),
            "--global-batch-size", str(n_samples),
            "--rollout-max-response-len", "1024",
            "--rollout-num-gpus", "8",
            "--log-passrate", "--log-multi-turn",
            "--use-wandb", "--wandb-mode", "offline", "--use-tensorboard", "--tb-experiment-name", "bench",
        ]
    )  # fmt: skip
    args.num_steps_per_rollout = 1
    args.eval_reward_key = None

    start = time.perf_counter()
    init_metrics(args)
    started = time.perf_counter()
    logged = log_rollout(args, 0, samples, rollout_time=60.0, train_data=train_data, loss_masks=masks)
    rollout_done = time.perf_counter()
    logged_eval = log_eval(args, 0, {"bench": samples}, n_samples_per_prompt=N_PER_PROMPT)
    eval_done = time.perf_counter()
    finish_metrics()
    finished = time.perf_counter()
    train_data_means(train_data, masks)  # timed alone too: the per-token part of log_rollout
    means_time = time.perf_counter() - finished
    tokens = sum(s.response_length for s in samples)
    print(
        f"{n_samples:>7} samples ({tokens / 1e6:.1f}M response tokens): rollout {rollout_done - started:6.3f} s "
        f"({len(logged)} metrics; train-tensor means alone {means_time:.3f} s), "
        f"eval {eval_done - rollout_done:6.3f} s ({len(logged_eval)} metrics), "
        f"total {eval_done - started:6.3f} s | sinks start {started - start:.2f} s, finish {finished - eval_done:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    sizes = parser.parse_args().sizes
    os.environ.setdefault("WANDB_SILENT", "true")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for n_samples in sizes:
        with tempfile.TemporaryDirectory() as out_dir:
            bench(n_samples, out_dir)


if __name__ == "__main__":
    main()
