"""What the example smoke tests check of a finished run (shared by test_cpu_demo_smoke and test_tool_demo_smoke)."""

import json
import re
import subprocess
from pathlib import Path

# What a process that dies natively leaves on the console: Ray's and Python's fault handlers, libstdc++'s terminate,
# a stack frame of a shared library, the shell's report of a SIGABRT.
NATIVE_CRASH = re.compile(
    r"SIGABRT|SIGSEGV|Fatal Python error|Unhandled exception|terminate called|\bAborted\b|\.so\(\+0x[0-9a-f]+\)"
)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_quiet_end(result: subprocess.CompletedProcess) -> None:
    """No native crash on the console, and no train actor's shared-memory weight buffer (torch names them
    ``torch_<pid>_*``) left in /dev/shm."""
    output = result.stdout + result.stderr
    crash = [line for line in output.splitlines() if NATIVE_CRASH.search(line)]
    assert not crash, "\n".join(crash[:20])
    trainers = set(re.findall(r"\(TrainActor pid=(\d+)\)", output))
    assert trainers, "no line of the train actor's on the console: its pid is how its buffers are found"
    left = [path.name for pid in trainers for path in Path("/dev/shm").glob(f"torch_{pid}_*")]
    assert not left, left
