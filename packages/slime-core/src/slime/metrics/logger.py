"""The metric dispatcher: one ``MetricLogger`` per process sends each set of metrics to every active sink.

The driver calls ``init_metrics(args)`` (the primary) before it hands ``args`` to Ray actors, because primary sinks
record what secondaries need to join the same run (the W&B run id, the TensorBoard directory). An actor that logs
calls ``init_metrics(args, primary=False, label="rollout_manager")`` first. ``log(args, metrics, step_key)`` keeps
slime's signature.

A sink that fails to start is left out, and one that raises while logging is skipped for that call; each warns
once, so a broken W&B connection never stops training.
"""

import argparse
import logging
import numbers
from typing import Any

from slime.metrics.steps import STEP_KEYS
from slime.plugins import registry

logger = logging.getLogger(__name__)


def plain_number(key: str, value: Any) -> int | float:
    """numpy and torch scalars become Python numbers, so every sink (and the console) shows the same value."""
    if isinstance(value, numbers.Integral):  # bools too: True -> 1
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric '{key}' is {type(value).__name__} {value!r}; metrics must be numbers") from None


class MetricLogger:
    """Sends metrics to sinks (name -> sink), isolating each sink's failures from the others and from the run."""

    def __init__(self, sinks: dict[str, Any]) -> None:
        self.sinks = dict(sinks)
        self.failures = dict.fromkeys(self.sinks, 0)
        self.calls = 0

    def log(self, metrics: dict[str, Any], step_key: str) -> dict[str, int | float]:
        """Send ``metrics`` (which must hold ``step_key``) to every sink; returns the values as written."""
        if step_key not in STEP_KEYS:
            raise ValueError(f"unknown step key '{step_key}'; expected one of {', '.join(STEP_KEYS)}")
        if step_key not in metrics:
            raise ValueError(f"metrics logged against '{step_key}' must contain it")
        values = {key: plain_number(key, value) for key, value in metrics.items()}
        self.calls += 1
        for name, sink in self.sinks.items():
            try:
                sink.log(values, step_key)
            except Exception as exc:
                self.failures[name] += 1
                if self.failures[name] == 1:
                    logger.warning(
                        "metric sink '%s' failed (%s: %s); the run goes on, and further failures of this sink "
                        "are counted, not repeated",
                        name,
                        type(exc).__name__,
                        exc,
                    )
        return values

    def finish(self) -> None:
        for name, sink in self.sinks.items():
            try:
                sink.finish()
            except Exception as exc:
                logger.warning("metric sink '%s' failed to finish (%s: %s)", name, type(exc).__name__, exc)
            if self.failures[name]:
                logger.warning("metric sink '%s' failed %d of %d log calls", name, self.failures[name], self.calls)


def start_sinks(args: argparse.Namespace, primary: bool = True, label: str = "driver") -> dict[str, Any]:
    """Build every registered sink whose ``enabled(args)`` holds (a sink without that classmethod is always on)."""
    sinks: dict[str, Any] = {}
    for name, entry in sorted(registry("metric_sinks").entries.items()):
        enabled = getattr(entry.obj, "enabled", None)
        if enabled is not None and not enabled(args):
            continue
        try:
            sinks[name] = entry.obj(args, primary=primary, label=label)
        except Exception as exc:
            logger.warning(
                "metric sink '%s' (from %s) failed to start (%s: %s); the run goes on without it",
                name,
                entry.plugin.describe(),
                type(exc).__name__,
                exc,
            )
    return sinks


_current: MetricLogger | None = None


def init_metrics(args: argparse.Namespace, primary: bool = True, label: str = "driver") -> MetricLogger:
    """Start this process's sinks; the logger that ``log`` uses until ``finish_metrics``."""
    global _current
    if _current is not None:
        raise RuntimeError("metrics are already initialised in this process; call finish_metrics() first")
    _current = MetricLogger(start_sinks(args, primary=primary, label=label))
    return _current


def current_logger() -> MetricLogger:
    if _current is None:
        raise RuntimeError("call slime.metrics.init_metrics(args) before logging metrics")
    return _current


def log(args: argparse.Namespace, metrics: dict[str, Any], step_key: str) -> dict[str, int | float]:
    """Send metrics to this process's sinks. ``args`` is unused; the parameter keeps slime's ``log`` signature."""
    return current_logger().log(metrics, step_key)


def finish_metrics() -> None:
    """Finish every sink (flush files, close the W&B run); a no-op when metrics were not initialised."""
    global _current
    if _current is not None:
        _current.finish()
        _current = None
