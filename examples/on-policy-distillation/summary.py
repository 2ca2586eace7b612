"""Print what the distillation example measured: held-out eval reward per eval of the student's SFT, the teacher's
GRPO and the distillation, and the distillation's mean reverse KL to the teacher per rollout.

uv run python examples/on-policy-distillation/summary.py outputs/on-policy-distillation
"""

import json
import sys
from pathlib import Path


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/on-policy-distillation")
    for stage in ("student", "teacher", "distill"):
        evals = [(r["eval/step"], r["eval/arith"]) for r in rows(out / stage) if "eval/arith" in r]
        print(f"{stage:8s} eval reward by rollout: " + "  ".join(f"{step}:{value:.2f}" for step, value in evals))
    kl = [r["rollout/opd_reverse_kl"] for r in rows(out / "distill") if "rollout/opd_reverse_kl" in r]
    if kl:
        print(f"distill  reverse KL to the teacher: {kl[0]:.3f} at rollout 0 -> {kl[-1]:.3f} at rollout {len(kl) - 1}")
    print("wall time: " + ", ".join((out / "timings.txt").read_text(encoding="utf-8").split("\n")).strip(", "))


if __name__ == "__main__":
    main()
