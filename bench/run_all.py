"""Run every CPU bench and print the rows of docs/benchmarks.md as one Markdown table (also written to --out).

    python bench/run_all.py [--quick] [--out bench-results.md] [--only e2e_vs_trl scale ...]

Each bench prints ``ROW {json}`` lines (bench/common.py); everything else it prints is passed through, so the
per-repeat numbers stay visible. ``--quick`` runs each bench at a smaller size with fewer repeats (a smoke run: the
rows it gives are not the ones recorded). The GPU check (bench/gpu/megatron_train_1b.py) is not run here.
"""

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name (the script, then what tells its rows apart) -> (full arguments, --quick arguments)
BENCHES = {
    "scale": (["--repeats", "2"], ["--sizes", "1000", "10000", "--repeats", "1"]),
    "train_vs_torch": (["--sizes", "1M", "10M", "--steps", "8"], ["--sizes", "1M", "--steps", "2"]),
    "weight_sync": (["--sizes", "1M", "30M", "250M", "--repeats", "4"], ["--sizes", "1M", "--repeats", "2"]),
    "hf_export": (["--calls", "8"], ["--sizes", "1M", "--calls", "3"]),
    "rollout_vs_hf": (
        ["--sizes", "1M", "10M", "30M", "--batches", "8", "64", "256", "--repeats", "2"],
        ["--sizes", "1M", "--batches", "8", "--repeats", "1"],
    ),
    "e2e_vs_trl": (["--repeats", "2", "--rollouts", "6"], ["--repeats", "1", "--rollouts", "2"]),
    # slime's throughput mode (generation overlapping training): not TRL's on-policy step, so beside the goal's row.
    "e2e_vs_trl --slime-async": (
        ["--repeats", "2", "--rollouts", "6", "--slime-async"],
        ["--repeats", "1", "--rollouts", "2", "--slime-async"],
    ),
}


def run_bench(name: str, arguments: list[str]) -> list[dict]:
    command = [sys.executable, str(HERE / f"{name.split()[0]}.py"), *arguments]
    print(f"=== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
    rows = []
    for line in proc.stdout:
        if line.startswith("ROW "):
            rows.append(json.loads(line[4:]))
            print(f"  {line}", end="", flush=True)
        elif not line.startswith(("Writing model shards", "Loading weights")):
            print(f"  {line}", end="", flush=True)
    code = proc.wait()
    print(f"=== {name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
    if code != 0:
        rows.append({"what": name, "result": f"FAILED (exit {code})", "ratio": "", "goal": "", "machine": "",
                     "command": " ".join(command[1:])})  # fmt: skip
    return rows


def table(rows: list[dict], date: str) -> str:
    lines = [
        "| what | result (median (min-max, n=repeats)) | ratio | goal | machine | command | date |",
        "|---" * 7 + "|",
    ]
    for row in rows:
        cells = [row["what"], row["result"], row["ratio"], row["goal"], row["machine"], f"`{row['command']}`", date]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    options = parser.parse_args()
    rows = []
    for name in options.only:
        full, quick = BENCHES[name]
        rows += run_bench(name, quick if options.quick else full)
    result = table(rows, datetime.date.today().isoformat())
    print(result)
    if options.out:
        options.out.write_text(result)


if __name__ == "__main__":
    main()
