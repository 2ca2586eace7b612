"""Print what the tool demo measured: held-out eval reward per GRPO eval, rounds per sample, and stage wall times.

uv run python examples/tool-demo/summary.py outputs/tool-demo
"""

import json
import sys
from pathlib import Path

EVAL_KEY = "eval/arith"  # mean reward on the held-out split (named `arith` by run.sh's --eval-prompt-data)
ROUNDS_KEY = "multi_turn/multi_turn_metric/round_number_mean"  # model turns per sample: 2 when it calls the tool


def series(run_dir: Path, key: str, step_key: str) -> list[tuple[int, float]]:
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if key in record:
            rows.append((int(record[step_key]), float(record[key])))
    return rows


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/tool-demo")
    rewards = series(out / "grpo", EVAL_KEY, "eval/step")
    rounds = series(out / "grpo", ROUNDS_KEY, "rollout/step")
    print("GRPO eval reward by rollout: " + "  ".join(f"{step}:{value:.2f}" for step, value in rewards))
    print("GRPO rounds per sample by rollout: " + "  ".join(f"{step}:{value:.2f}" for step, value in rounds))
    print(f"held-out eval reward over GRPO: {rewards[0][1]:.2f} at its start -> {rewards[-1][1]:.2f} at the end")
    print("wall time: " + ", ".join((out / "timings.txt").read_text(encoding="utf-8").split("\n")).strip(", "))
    print(f"reports: {out}/sft/report/index.html, {out}/grpo/report/index.html")


if __name__ == "__main__":
    main()
