"""What the HF test backends were asked to do, in order, across processes: ``<--output-dir>/calls.jsonl``, one
line per call (the train actor and the rollout manager both append), so a test can assert the loop's order of
generate / release / onload / train / offload / resume / update."""

import json
import os
from pathlib import Path

LOG_NAME = "calls.jsonl"


def record_call(output_dir: str, call: str, **details: object) -> None:
    path = Path(output_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # One O_APPEND write per line: lines from concurrent callers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({"call": call, **details}) + "\n").encode())
    finally:
        os.close(fd)


def read_calls(output_dir: str | Path) -> list[str]:
    """The calls in order, repeats collapsed (one ``generate`` per rollout, not per sample)."""
    path = Path(output_dir) / LOG_NAME
    calls: list[str] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        call = json.loads(line)["call"]
        if not calls or calls[-1] != call:
            calls.append(call)
    return calls
