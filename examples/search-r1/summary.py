"""Print what a search-r1 run did: per rollout, how many samples searched and were right; the eval reward; wall times.

uv run python examples/search-r1/summary.py outputs/search-r1
"""

import json
import sys
from pathlib import Path

EVAL_KEY = "eval/facts"  # mean exact-match reward on the held-out questions (run.sh's --eval-prompt-data name)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/search-r1")
    dumps = sorted((out / "grpo" / "rollouts").glob("rollout_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    for path in dumps:
        samples = json.loads(path.read_text(encoding="utf-8"))["samples"]
        searched = sum("<information>" in s["response"] for s in samples)
        right = sum(s["reward"] == 1.0 for s in samples)
        rounds = sum(s["metadata"]["round_number"] for s in samples) / len(samples)
        print(f"{path.stem}: {len(samples)} samples, {searched} searched, {right} right, {rounds:.2f} turns per sample")
    lines = (out / "grpo" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    evals = [(r["eval/step"], r[EVAL_KEY]) for r in map(json.loads, lines) if EVAL_KEY in r]
    print("eval reward by rollout: " + "  ".join(f"{step}:{value:.2f}" for step, value in evals))
    print("wall time: " + ", ".join((out / "timings.txt").read_text(encoding="utf-8").splitlines()))
    print(f"report: {out}/grpo/report/index.html")


if __name__ == "__main__":
    main()
