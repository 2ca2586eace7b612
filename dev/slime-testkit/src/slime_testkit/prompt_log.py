"""A reward function for tests that also records which prompt each sample came from, so a test can rebuild the
sequence of prompts a run trained on (``--custom-rm-path slime_testkit.prompt_log.record_prompt``).

It runs in the rollout manager's Ray worker, which may belong to a Ray runtime the test started: hence a module of the
installed package, and a log at ``<--output-dir>/prompts.jsonl`` (a resumed run given its own output dir gets its own
log)."""

import json
import os
from pathlib import Path
from typing import Any

from slime.types import Sample

LOG_NAME = "prompts.jsonl"


async def record_prompt(args: Any, sample: Sample) -> float:
    line = json.dumps({"group": sample.group_index, "index": sample.index, "label": sample.label}) + "\n"
    path = Path(args.output_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # One O_APPEND write per line: lines of concurrent samples never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return float(sample.label in sample.response)


def read_prompt_log(output_dir: Path) -> dict[int, str]:
    """group index -> label of every sample the segment scored; a line cut by SIGKILL (the last one) is skipped."""
    path = Path(output_dir) / LOG_NAME
    groups: dict[int, str] = {}
    if not path.exists():
        return groups
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        groups[record["group"]] = record["label"]
    return groups
