"""How the rollout manager's result conversion and the metrics grow from 1k to 100k samples (goal: linear, 100k < 5 s).

Per size it builds metrics_scale.py's synthetic rollout (8 samples per prompt, responses of 1-1024 tokens, tool
tokens, looping responses, per-token tensors) and times what happens to one rollout after generation:

* ``convert``: ``samples_to_train_batch`` + a pickle round trip of the ``TrainBatch`` and the samples' weight
  versions (what the rollout manager hands to Ray and the driver receives; since the third session the samples
  themselves stay in the rollout manager, which computes the rollout's metrics);
* ``metrics``: ``log_rollout`` + ``log_eval`` with the JSONL, TensorBoard and W&B (offline) sinks on.

Sizes run in order, repeated; linearity is the cost per sample at the largest size over that at the smallest.

    python bench/scale.py [--sizes 1000 10000 100000] [--repeats 2]
"""

import argparse
import pickle
import tempfile
import time

from common import emit_row, load_average, median, set_bench_env, spread, this_command
from metrics_scale import N_PER_PROMPT, build_rollout


def convert(args, samples) -> float:
    from slime.ray.rollout_manager import newest_weight_version
    from slime.train_data import samples_to_train_batch

    start = time.perf_counter()
    batch = samples_to_train_batch(args, samples)
    versions = [newest_weight_version(sample) for sample in samples]
    pickle.loads(pickle.dumps((batch, versions), protocol=pickle.HIGHEST_PROTOCOL))
    return time.perf_counter() - start


def metrics(samples, train_data, masks, out_dir: str) -> float:
    from slime.arguments import build_parser
    from slime.metrics import finish_metrics, init_metrics, log_eval, log_rollout

    n = len(samples)
    args = build_parser().parse_args(
        [
            "--output-dir", out_dir, "--rollout-batch-size", str(n // N_PER_PROMPT),
            "--n-samples-per-prompt", str(N_PER_PROMPT), "--global-batch-size", str(n),
            "--rollout-max-response-len", "1024", "--rollout-num-gpus", "8", "--log-passrate", "--log-multi-turn",
            "--use-wandb", "--wandb-mode", "offline", "--use-tensorboard", "--tb-experiment-name", "bench",
        ]
    )  # fmt: skip
    args.num_steps_per_rollout = 1
    args.eval_reward_key = None
    init_metrics(args)
    start = time.perf_counter()
    log_rollout(args, 0, samples, rollout_time=60.0, train_data=train_data, loss_masks=masks)
    log_eval(args, 0, {"bench": samples}, n_samples_per_prompt=N_PER_PROMPT)
    seconds = time.perf_counter() - start
    finish_metrics()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    set_bench_env()
    from slime.arguments import build_parser

    args = build_parser().parse_args(["--n-samples-per-prompt", str(N_PER_PROMPT), "--advantage-estimator", "grpo"])
    results: dict[int, dict[str, list[float]]] = {n: {"convert": [], "metrics": [], "total": []} for n in options.sizes}
    loads = []
    for _ in range(options.repeats):
        for n in options.sizes:
            loads.append(load_average())
            samples, train_data, masks = build_rollout(n)
            with tempfile.TemporaryDirectory() as out_dir:
                c = convert(args, samples)
                m = metrics(samples, train_data, masks, out_dir)
            for key, value in (("convert", c), ("metrics", m), ("total", c + m)):
                results[n][key].append(value)
            print(f"{n:>7} samples: convert {c:.3f} s, metrics {m:.3f} s", flush=True)
    smallest, largest = min(options.sizes), max(options.sizes)
    per_sample = {n: median(results[n]["total"]) / n for n in options.sizes}
    growth = per_sample[largest] / per_sample[smallest]
    print(f"load {min(loads)}-{max(loads)}; cost per sample at {largest} / at {smallest}: {growth:.2f}")
    emit_row(
        f"scale: one rollout's result conversion + metrics at {', '.join(f'{n // 1000}k' for n in options.sizes)} "
        "samples",
        "; ".join(
            f"{n // 1000}k: convert {spread(results[n]['convert'])} s, metrics {spread(results[n]['metrics'])} s"
            for n in options.sizes
        ),
        f"total {largest // 1000}k {spread(results[largest]['total'])} s; per-sample cost {largest // 1000}k / "
        f"{smallest // 1000}k = {growth:.2f} (1.0 = linear)",
        f"100k < 5 s: {'met' if median(results[largest]['total']) < 5 else 'not met'}"
        if largest >= 100_000
        else "100k < 5 s: not measured (--sizes)",
        this_command(),
    )


if __name__ == "__main__":
    main()
