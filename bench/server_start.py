"""Start-up time of one SGLang CPU server (launch until ``/health_generate`` answers), this checkout against another.

Each repeat starts a server with this checkout's ``slime_sglang`` and then one with ``--before``'s (a checkout of
an earlier commit; its ``slime_sglang`` goes first on the server's ``PYTHONPATH``), alternating, on the same tiny
model. Without ``--before`` only this checkout is timed.

    git worktree add /tmp/before <commit>
    python bench/server_start.py --before /tmp/before [--repeats 3]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import load_average, set_bench_env, spread, this_command
from sglang_server import start_server


def timed_start(model: Path, checkout: Path | None) -> float:
    """Seconds from launch to a healthy server; ``checkout``'s ``slime_sglang`` serves when given."""
    saved = os.environ.get("PYTHONPATH")
    if checkout is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout / "packages/slime-sglang/src"), saved) if p)
    try:
        started = time.perf_counter()
        server = start_server(model)
        seconds = time.perf_counter() - started
        server.shutdown()
        return seconds
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the commit to compare against")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    set_bench_env()
    from slime_testkit.tiny_model import build_tiny_model

    model = build_tiny_model(Path(tempfile.mkdtemp(prefix="slime-bench-start-")) / "model", seed=0)
    runs: dict[str, list[float]] = {"this checkout": [], "before": []}
    loads = [load_average()]
    for repeat in range(args.repeats):
        runs["this checkout"].append(timed_start(model, None))
        if args.before is not None:
            runs["before"].append(timed_start(model, args.before))
        loads.append(load_average())
        print(
            f"repeat {repeat}: " + ", ".join(f"{name} {seconds[-1]:.1f} s" for name, seconds in runs.items() if seconds)
        )
    print(f"command: {this_command()}; load {min(loads):.1f}-{max(loads):.1f}")
    for name, seconds in runs.items():
        if seconds:
            print(f"{name}: start {spread(seconds)} s")
    if runs["before"]:
        ratios = [b / a for a, b in zip(runs["this checkout"], runs["before"], strict=True)]
        print(f"before / this checkout: {spread(ratios)}x")


if __name__ == "__main__":
    main()
