"""Print what the CPU demo measured: held-out eval reward per eval step of each stage, and each stage's wall time.

uv run python examples/cpu-demo/summary.py outputs/cpu-demo
"""

import json
import sys
from pathlib import Path

EVAL_KEY = "eval/arith"  # mean reward on the held-out split (named `arith` by run.sh's --eval-prompt-data)


def eval_rewards(run_dir: Path) -> list[tuple[int, float]]:
    """(eval step, mean eval reward) from a run's metrics.jsonl, in order."""
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if EVAL_KEY in record:
            rows.append((int(record["eval/step"]), float(record[EVAL_KEY])))
    return rows


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/cpu-demo")
    rl_stages = [stage for stage in ("grpo", "ppo") if (out / stage / "metrics.jsonl").is_file()]  # run.sh's ALGO
    for stage in ("sft", *rl_stages):
        rewards = eval_rewards(out / stage)
        trail = "  ".join(f"{step}:{reward:.2f}" for step, reward in rewards)
        print(f"{stage:5s} eval reward by rollout: {trail}")
    for stage in rl_stages:
        rewards = eval_rewards(out / stage)
        print(
            f"held-out eval reward over {stage.upper()}: {rewards[0][1]:.2f} at its start -> "
            f"{rewards[-1][1]:.2f} at the end"
        )
    print("wall time: " + ", ".join((out / "timings.txt").read_text(encoding="utf-8").split("\n")).strip(", "))
    print("reports: " + ", ".join(f"{out}/{stage}/report/index.html" for stage in ("sft", *rl_stages)))


if __name__ == "__main__":
    main()
