"""What a metric sink is, and the always-on JSONL sink (``metrics.jsonl`` in ``--output-dir``).

A sink is a class registered through ``slime_register_metric_sinks``. slime builds it as
``cls(args, primary=..., label=...)`` in every process that logs (the driver is the primary; Ray actors that log are
secondaries, named by ``label``), when its optional ``enabled(args)`` classmethod says so. Core computes every
metric; a sink only writes what it is given.
"""

import argparse
import json
import os
from pathlib import Path
from typing import Any, Protocol

METRICS_FILE = "metrics.jsonl"


class MetricSink(Protocol):
    def __init__(self, args: argparse.Namespace, *, primary: bool, label: str) -> None: ...

    def log(self, metrics: dict[str, Any], step_key: str) -> None:
        """Write one set of metrics; ``metrics[step_key]`` is their step (``train/step``, ``rollout/step``, ...)."""

    def finish(self) -> None:
        """Flush and close; called once at the end of the run."""


class JsonlSink:
    """Appends one JSON object per log call to ``<output-dir>/metrics.jsonl``: the step key and the metrics.

    Always on, so every run leaves a file that tests, reports and plots can read without W&B. Each line is written
    with one ``write`` on a file opened for appending, so the driver and actors on one machine can share it.
    """

    @classmethod
    def enabled(cls, args: argparse.Namespace) -> bool:
        return True

    def __init__(self, args: argparse.Namespace, *, primary: bool = True, label: str = "driver") -> None:
        self.path = Path(args.output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(self, metrics: dict[str, Any], step_key: str) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is closed")
        os.write(self._fd, (json.dumps(metrics, separators=(",", ":")) + "\n").encode("utf-8"))

    def finish(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
