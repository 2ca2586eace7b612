"""How the rollout's result handling grows from 1k to 100k samples (goal: linear, 100k < 5 s).

Per size it builds metrics_scale.py's synthetic rollout (8 samples per prompt, responses of 1-1024 tokens with
random token ids and the engine's log-prob of every token, a tenth multi-turn with tool tokens masked out, looping
responses) and times what slime's loop does with one rollout after generation:

* ``manager``: in the rollout manager, ``samples_to_train_batch`` + ``rollout_report`` (every rollout /
  multi_turn / passrate / perf metric) + each sample's weight version, then ``ray.put`` of the batch (a real local
  Ray runtime);
* ``driver``: ``publish_rollout`` + ``log_eval`` (the same samples as one eval set) with the JSONL, TensorBoard and
  W&B (offline) sinks on;
* ``trainer``: a Ray task that is handed the batch's reference, as each train actor is: the call's round trip,
  the batch's deserialization in the worker included.

Also timed, outside the total: ``train_data_means`` over per-token training tensors, which slime's trainer-side
``log_rollout_data`` reports as rollout/log_probs, rollout/advantages, ...; no built-in train backend passes them to
slime's loop (docs/metrics.md), so the loop does not pay it.

Sizes run in order, repeated; linearity is the cost per sample at the largest size over that at the smallest.

    python bench/scale.py [--sizes 1000 10000 100000] [--repeats 2]
"""

import argparse
import pickle
import tempfile
import time

from common import emit_row, load_average, median, set_bench_env, spread, this_command, verdict
from metrics_scale import N_PER_PROMPT, build_rollout


def metrics_args(n: int, out_dir: str):
    from slime.config.arguments import build_parser

    args = build_parser().parse_args(
        [
            "--output-dir", out_dir, "--rollout-batch-size", str(n // N_PER_PROMPT),
            "--n-samples-per-prompt", str(N_PER_PROMPT), "--global-batch-size", str(n),
            "--advantage-estimator", "grpo", "--rollout-max-response-len", "1024", "--rollout-num-gpus", "8",
            "--log-passrate", "--log-multi-turn", "--use-wandb", "--wandb-mode", "offline", "--use-tensorboard",
            "--tb-experiment-name", "bench",
        ]
    )  # fmt: skip
    args.num_steps_per_rollout = 1
    args.eval_reward_key = None
    return args


def manager(args, samples):
    import ray

    from slime.metrics import rollout_report
    from slime.rollout.train_batch import samples_to_train_batch

    start = time.perf_counter()
    batch = samples_to_train_batch(args, samples)
    report = rollout_report(args, 0, samples, rollout_time=60.0)
    pickle.dumps((report, batch.weight_versions), protocol=pickle.HIGHEST_PROTOCOL)  # the small result the driver gets
    batch_ref = ray.put(batch)
    return time.perf_counter() - start, report, batch_ref


def receive(batch) -> int:
    """What a train actor's ``train`` gets: the batch, deserialized by Ray in the worker."""
    return len(batch)


def trainer(remote_receive, batch_ref) -> float:
    import ray

    start = time.perf_counter()
    ray.get(remote_receive.remote(batch_ref))
    return time.perf_counter() - start


def driver(args, report: dict, samples) -> float:
    from slime.metrics import log_eval, publish_rollout

    start = time.perf_counter()
    publish_rollout(args, 0, report)
    log_eval(args, 0, {"bench": samples}, n_samples_per_prompt=N_PER_PROMPT)
    return time.perf_counter() - start


def train_data_time(train_data, masks) -> float:
    from slime.metrics.rollout import train_data_means

    start = time.perf_counter()
    train_data_means(train_data, masks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    set_bench_env()
    import ray

    from slime.metrics import finish_metrics, init_metrics

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    remote_receive = ray.remote(num_cpus=0)(receive)
    with tempfile.TemporaryDirectory() as out_dir:  # a worker up, with slime imported, before the first timing
        trainer(remote_receive, manager(metrics_args(N_PER_PROMPT, out_dir), build_rollout(N_PER_PROMPT)[0])[2])

    results = {n: {"manager": [], "driver": [], "trainer": [], "total": [], "train_data": []} for n in options.sizes}
    loads = []
    for _ in range(options.repeats):
        for n in options.sizes:
            loads.append(load_average())
            samples, train_data, masks = build_rollout(n)
            with tempfile.TemporaryDirectory() as out_dir:
                args = metrics_args(n, out_dir)
                m, report, batch_ref = manager(args, samples)
                init_metrics(args)  # after: W&B's service process starts here, once per run in slime
                d = driver(args, report, samples)
                finish_metrics()
            t = train_data_time(train_data, masks)
            del samples, train_data, masks
            r = trainer(remote_receive, batch_ref)
            del batch_ref
            for key, value in (("manager", m), ("driver", d), ("trainer", r), ("total", m + d + r), ("train_data", t)):
                results[n][key].append(value)
            print(
                f"{n:>7} samples: manager {m:.3f} s, driver {d:.3f} s, trainer {r:.3f} s; train-data means {t:.3f} s",
                flush=True,
            )
    smallest, largest = min(options.sizes), max(options.sizes)
    per_sample = {n: median(results[n]["total"]) / n for n in options.sizes}
    growth = per_sample[largest] / per_sample[smallest]
    print(f"load {min(loads)}-{max(loads)}; cost per sample at {largest} / at {smallest}: {growth:.2f}")
    emit_row(
        f"scale: one rollout's result in the rollout manager, driver and a train actor at "
        f"{', '.join(f'{n // 1000}k' for n in options.sizes)} samples",
        "; ".join(
            f"{n // 1000}k: manager {spread(results[n]['manager'])} s, driver {spread(results[n]['driver'])} s, "
            f"trainer {spread(results[n]['trainer'])} s "
            f"(train-data means, not in the loop: {spread(results[n]['train_data'])} s)"
            for n in options.sizes
        ),
        f"total {largest // 1000}k {spread(results[largest]['total'])} s; per-sample cost {largest // 1000}k / "
        f"{smallest // 1000}k = {growth:.2f} (1.0 = linear)",
        verdict("100k < 5 s", results[largest]["total"], lambda seconds: seconds < 5)
        if largest >= 100_000
        else "100k < 5 s: not measured (--sizes)",
        this_command(),
    )


if __name__ == "__main__":
    main()
