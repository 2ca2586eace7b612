"""Print the mismatch metrics of run.sh's two train-only runs, side by side, from their metrics.jsonl files."""

import json
import sys
from pathlib import Path

METRICS = ("train/train_rollout_logprob_abs_diff", "train/mis_kl", "train/mis_k3_kl", "train/mis_chi2_token")


def last_values(run_dir: Path) -> dict[str, float]:
    """Each metric's value at the run's last step that logs it."""
    values: dict[str, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        values.update({name: record[name] for name in METRICS if name in record})
    return values


def main() -> None:
    out = Path(sys.argv[1])
    runs = {"engine = trainer's weights": out / "train-same", "engine = perturbed weights": out / "train-perturbed"}
    print(f"{'metric':40s}" + "".join(f"{label:>30s}" for label in runs))
    table = {label: last_values(path) for label, path in runs.items()}
    for name in METRICS:
        print(f"{name:40s}" + "".join(f"{table[label].get(name, float('nan')):30.3g}" for label in runs))


if __name__ == "__main__":
    main()
