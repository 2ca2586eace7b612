"""Helpers every bench script shares: the machine line, spreads over repeats, and the result rows run_all collects.

A bench prints its result rows as ``ROW {json}`` lines; ``bench/run_all.py`` collects them into one table.
"""

import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence

# Set before anything imports ray, wandb or huggingface_hub (they read these at import time); as tests/conftest.py.
BENCH_ENV = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_bench_env() -> None:
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def machine() -> str:
    """e.g. ``x86_64, 2 CPUs, no GPU, load 3.1``: what a row of docs/benchmarks.md names as its machine."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU, load {load_average()}"


def spread(values: Sequence[float], digits: int = 3) -> str:
    """``median (min-max, n=K)`` of a list of repeats."""
    values = list(values)
    if not values:
        return "n/a"
    fmt = f"{{:.{digits}g}}"
    med = fmt.format(statistics.median(values))
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))}, n={len(values)})"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def verdict(goal: str, ratios: Sequence[float], meets: Callable[[float], bool]) -> str:
    """``goal: met`` only when every repeat meets it, ``not met`` when none does, else ``mixed`` (the spread
    crosses the goal: no claim either way)."""
    hits = sum(1 for r in ratios if meets(r))
    state = "met" if hits == len(ratios) else "not met" if hits == 0 else f"mixed ({hits} of {len(ratios)} repeats)"
    return f"{goal}: {state}"


def emit_row(what: str, result: str, ratio: str, goal: str, command: str) -> None:
    """One row of docs/benchmarks.md, printed for run_all to collect (and readable on its own)."""
    row = {"what": what, "result": result, "ratio": ratio, "goal": goal, "machine": machine(), "command": command}
    print("ROW " + json.dumps(row), flush=True)


def this_command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
