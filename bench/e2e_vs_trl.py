"""End to end on CPU: slime (Ray + Megatron-core + SGLang) against TRL's ``GRPOTrainer``, same model, task and batch.

The task is the CPU demo's (examples/cpu-demo/prepare.py: "What is a + b?" with a chat template, the ``math`` reward
on the last ``\\boxed{}``), on its tiny Qwen2 model (hidden 128, 4 layers) from random weights. Both sides run
GRPO with the same numbers: 16 prompts x 8 samples per rollout (128 samples), responses of at most 8 tokens,
temperature 1, 2 optimizer steps per rollout (64 samples each, micro-batches of 32; other shapes below), clip 0.2,
lr 1e-4, no KL term, fp32. TRL generates with HF ``generate`` (no vLLM on CPU); slime with SGLang on CPU, its
weights going to the engine through shared memory (the CPU default).

Each repeat runs slime then TRL (the order alternates between repeats) in fresh processes; per side it reports
the steady-state seconds per rollout (the median of rollouts 1.., rollout 0 excluded: warm-up), samples/s at that
pace, the start-up time (process start to the first rollout) and the mean reward of the last rollout.

    python bench/e2e_vs_trl.py [--repeats 2] [--rollouts 4]
    python bench/e2e_vs_trl.py --work issue23 [--model 10m]
    python bench/e2e_vs_trl.py --work issue23 --before=--rollout-per-sample-requests

``--before FLAGS`` adds a third side to every repeat: slime with those flags (a change's "before"), so a change is
measured side by side with what it changes, alternating with the other two. ``--before-one-thread`` makes that side
the thread fix's before (issue 20): every process of slime's run keeps one CPU thread, as Ray's
``OMP_NUM_THREADS=1`` left it (``bench/one_thread/sitecustomize.py`` on its ``PYTHONPATH``). ``--before-glibc-malloc``
makes it the malloc settings' before (issue 23, ``slime/ray/cpu_malloc.py``): an empty ``GLIBC_TUNABLES`` in its
environment leaves the train actors with glibc's default malloc.

``--slime-flags FLAGS`` adds flags to the slime side only (not to the before side): e.g.
``--slime-async --slime-flags="--rollout-function-path fully_async" --before=""`` measures the fully asynchronous
rollout against ``--async`` alone.

``--work issue23`` is issue 23's shape instead: 32 new tokens, one optimizer step over all 128 samples per rollout
(micro-batch 128), on the 1M model or (``--model 10m``) a 10M one (hidden 384, 6 layers).

From random weights the reward stays near 0 on both sides: this measures speed, not learning.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit_row, load_average, median, set_bench_env, spread, this_command, verdict

ROOT = Path(__file__).resolve().parents[1]
PROMPTS, SAMPLES = 16, 8
LR, EPS_CLIP = 1e-4, 0.2
# (new tokens per response, samples per optimizer step, micro-batch) of each work shape
WORKS = {"demo": (8, 64, 32), "issue23": (32, 128, 128)}
MODELS = {"1m": [], "10m": ["--hidden-size", "384", "--num-layers", "6"]}  # prepare.py's shape flags
RESPONSE_LEN, GLOBAL_BATCH, MICRO_BATCH = WORKS["demo"]


def use_work(work: str) -> None:
    global RESPONSE_LEN, GLOBAL_BATCH, MICRO_BATCH
    RESPONSE_LEN, GLOBAL_BATCH, MICRO_BATCH = WORKS[work]


def prepare(workdir: Path, model: str) -> None:
    command = [sys.executable, str(ROOT / "examples/cpu-demo/prepare.py"), "--out", str(workdir), *MODELS[model]]
    subprocess.run(command, check=True)


def run_slime(workdir: Path, rollouts: int, async_training: bool = False, extra: list[str] | None = None) -> dict:
    set_bench_env()
    start = time.perf_counter()
    import ray

    from slime.config.arguments import parse_args
    from slime.loop import train

    out = Path(tempfile.mkdtemp(dir=workdir, prefix="slime-"))
    args = parse_args(
        [
            "--train-backend", "megatron", "--rollout-backend", "sglang", "--sglang-device", "cpu",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
            "--hf-checkpoint", str(workdir / "model"), "--prompt-data", str(workdir / "data/train.jsonl"),
            "--input-key", "prompt", "--label-key", "label", "--apply-chat-template", "--rm-type", "math",
            "--advantage-estimator", "grpo", "--rollout-batch-size", str(PROMPTS),
            "--n-samples-per-prompt", str(SAMPLES), "--rollout-max-response-len", str(RESPONSE_LEN),
            "--rollout-temperature", "1.0", "--global-batch-size", str(GLOBAL_BATCH),
            "--micro-batch-size", str(MICRO_BATCH), "--lr", str(LR), "--weight-decay", "0.0",
            "--eps-clip", str(EPS_CLIP), "--num-rollout", str(rollouts), "--output-dir", str(out),
            *(["--async"] if async_training else []), *(extra or []),
        ]
    )  # fmt: skip
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)  # never a running cluster
    train(args)
    total = time.perf_counter() - start
    ray.shutdown()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    perf = [line for line in lines if "perf/train_time" in line]
    # One rollout as the loop runs it: wait for the generation, train, push the weights back.
    steps = [p["perf/train_wait_time"] + p["perf/train_time"] + p.get("perf/update_weights_time", 0.0) for p in perf]
    rewards = [line["rollout/raw_reward"] for line in lines if "rollout/raw_reward" in line]
    phases = {k: median([p[k] for p in perf[1:]]) for k in perf[0] if k.startswith("perf/") and k.endswith("_time")}
    return {"steps": steps, "total": total, "last_reward": rewards[-1], "phases": phases}


def run_trl(workdir: Path, rollouts: int) -> dict:
    set_bench_env()
    start = time.perf_counter()
    import asyncio

    from datasets import load_dataset
    from slime_rewards_math.rewards import math_reward
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from slime.types import Sample

    def reward(prompts, completions, label, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]

        async def score() -> list[float]:
            return [await math_reward(None, Sample(response=t, label=g)) for t, g in zip(texts, label, strict=True)]

        return asyncio.run(score())

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.rewards: list[float] = []

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "reward" in logs:
                self.rewards.append(logs["reward"])

    steps_per_rollout = PROMPTS * SAMPLES // GLOBAL_BATCH
    config = GRPOConfig(
        output_dir=str(Path(tempfile.mkdtemp(dir=workdir, prefix="trl-"))),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=GLOBAL_BATCH // MICRO_BATCH,
        steps_per_generation=PROMPTS * SAMPLES // MICRO_BATCH,  # one generation of 128 samples per rollout
        num_generations=SAMPLES,
        max_completion_length=RESPONSE_LEN,
        temperature=1.0,
        learning_rate=LR,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        epsilon=EPS_CLIP,
        beta=0.0,
        num_iterations=1,
        max_steps=rollouts * steps_per_rollout,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=1234,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    times = StepTimes()
    dataset = load_dataset("json", data_files=str(workdir / "data/train.jsonl"), split="train")
    trainer = GRPOTrainer(
        model=str(workdir / "model"), reward_funcs=reward, args=config, train_dataset=dataset, callbacks=[times]
    )
    train_start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    ends = [train_start] + times.ends[steps_per_rollout - 1 :: steps_per_rollout]
    steps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {"steps": steps, "total": total, "last_reward": times.rewards[-1], "startup": train_start - start}


def run_side(
    side: str,
    workdir: Path,
    rollouts: int,
    work: str,
    slime_async: bool = False,
    before: str | None = None,
    before_one_thread: bool = False,
    slime_flags: str | None = None,
    before_glibc_malloc: bool = False,
) -> dict:
    """One side in a fresh process (each side imports heavy, conflicting state); its result is its last line."""
    start = time.perf_counter()
    command = [sys.executable, __file__, "--workdir", str(workdir), "--rollouts", str(rollouts)]
    command += ["--side", "slime" if side == "before" else side, "--work", work]
    command += ["--slime-async"] if slime_async else []
    command += [f"--before={before}"] if side == "before" and before else []
    command += [f"--slime-flags={slime_flags}"] if side == "slime" and slime_flags else []
    env = dict(os.environ)
    if side == "before" and before_one_thread:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench/one_thread"), env.get("PYTHONPATH")]))
    if side == "before" and before_glibc_malloc:
        env["GLIBC_TUNABLES"] = ""  # the driver tunes malloc itself (to nothing): no settings for the train actors
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rollouts", type=int, default=4, help="rollouts per run (the first is warm-up)")
    parser.add_argument("--side", choices=["slime", "trl"], help="internal: run one side and print its result")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--slime-async",
        action="store_true",
        help="slime with --async (the next rollout generates while this one trains: data one policy version old, "
        "not TRL's on-policy step, so not the goal's comparison)",
    )
    parser.add_argument("--work", choices=sorted(WORKS), default="demo", help="the work shape (see above)")
    parser.add_argument("--model", choices=sorted(MODELS), default="1m", help="the model's size")
    parser.add_argument("--before", help="slime flags of a third side, the 'before' of a change (see above)")
    parser.add_argument("--slime-flags", help="more slime flags for the slime side only (see above)")
    parser.add_argument(
        "--before-one-thread", action="store_true", help="the third side keeps one thread per process (see above)"
    )
    parser.add_argument(
        "--before-glibc-malloc", action="store_true", help="the third side keeps glibc's default malloc (see above)"
    )
    options = parser.parse_args()
    use_work(options.work)
    if options.side:
        if options.side == "slime":
            extra = shlex.split(options.before or "") + shlex.split(options.slime_flags or "")
            result = run_slime(options.workdir, options.rollouts, options.slime_async, extra)
        else:
            result = run_trl(options.workdir, options.rollouts)
        print(json.dumps(result), flush=True)
        return

    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-trl-"))
    prepare(workdir, options.model)
    before = options.before is not None or options.before_one_thread or options.before_glibc_malloc
    sides = ["slime", "trl"] + (["before"] if before else [])
    results: dict[str, list[dict]] = {side: [] for side in sides}
    loads = []
    for repeat in range(options.repeats):
        order = sides[repeat % len(sides) :] + sides[: repeat % len(sides)]
        order = order if repeat % 2 == 0 else order[::-1]
        for side in order:
            loads.append(load_average())
            result = run_side(
                side, workdir, options.rollouts, options.work, options.slime_async, options.before,
                options.before_one_thread, options.slime_flags, options.before_glibc_malloc,
            )  # fmt: skip
            steady = result["steps"][1:]
            print(
                f"repeat {repeat} {side:5}: s/rollout {[round(s, 2) for s in result['steps']]}, "
                f"process {result['process']:.1f} s, last reward {result['last_reward']:.3f}"
                + (f", phases {json.dumps({k: round(v, 2) for k, v in result['phases'].items()})}"
                   if "phases" in result else ""),
                flush=True,
            )  # fmt: skip
            result["steady"] = median(steady)
            results[side].append(result)

    samples = PROMPTS * SAMPLES
    rate = {side: [samples / r["steady"] for r in results[side]] for side in results}
    ratios = [s / t for s, t in zip(rate["slime"], rate["trl"], strict=True)]
    if before:
        label = "one thread per process" if options.before_one_thread else repr(options.before or "")
        label += ", glibc's default malloc" if options.before_glibc_malloc else ""
        before_ratios = [b / t for b, t in zip(rate["before"], rate["trl"], strict=True)]
        print(
            f"before ({label}): {spread(rate['before'])} samples/s, "
            f"{spread([r['steady'] for r in results['before']])} s/rollout; before/TRL {spread(before_ratios)}; "
            f"after/before {spread([a / b for a, b in zip(rate['slime'], rate['before'], strict=True)])}"
        )
    # Issue 10's goal for the demo's shape; issue 23's: 1.0x in sync mode, 1.5x with --async.
    goal = 1.5 if options.work == "demo" or options.slime_async else 1.0
    for side in ("slime", "trl"):
        print(
            f"{side:5}: {spread(rate[side])} samples/s, {spread([r['steady'] for r in results[side]])} s/rollout, "
            f"process {spread([r['process'] for r in results[side]])} s, "
            f"last reward {spread([r['last_reward'] for r in results[side]])}"
        )
    print(f"slime/TRL samples/s: {spread(ratios)}; load average during the runs {min(loads)}-{max(loads)}")
    emit_row(
        f"end to end GRPO, {options.model.upper()} model, {PROMPTS}x{SAMPLES} samples, {RESPONSE_LEN} tokens, "
        f"{PROMPTS * SAMPLES // GLOBAL_BATCH} step(s)/rollout, micro-batch {MICRO_BATCH}: slime "
        f"{'--async ' if options.slime_async else ''}vs TRL GRPOTrainer (CPU)",
        f"slime {spread(rate['slime'])} samples/s ({spread([r['steady'] for r in results['slime']])} s/rollout); "
        f"TRL {spread(rate['trl'])} samples/s ({spread([r['steady'] for r in results['trl']])} s/rollout); "
        f"reward after {options.rollouts} rollouts slime {spread([r['last_reward'] for r in results['slime']])}, "
        f"TRL {spread([r['last_reward'] for r in results['trl']])}; process wall slime "
        f"{spread([r['process'] for r in results['slime']])} s, TRL {spread([r['process'] for r in results['trl']])} s",
        f"slime/TRL samples/s {spread(ratios)}",
        verdict(f">= {goal}x", ratios, lambda r: r >= goal),
        this_command(),
    )


if __name__ == "__main__":
    main()
