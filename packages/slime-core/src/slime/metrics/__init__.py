"""Metric computation and logging, with slime's names and step keys.

Pure computation: ``rollout`` (``rollout/*``, ``multi_turn/*``, ``passrate/*``), ``eval`` (``eval/*``), ``perf``
(``perf/*``), ``steps`` (step keys). Logging: ``logger`` (the dispatcher to every active sink), ``sinks`` (the sink
contract and the always-on JSONL sink), ``publish`` (one call per loop phase: compute, plugin hooks, console, log).
"""

from slime.metrics.logger import MetricLogger, finish_metrics, init_metrics, log
from slime.metrics.publish import log_eval, log_perf, log_rollout, log_train_step, publish_rollout, rollout_report

__all__ = [
    "MetricLogger",
    "finish_metrics",
    "init_metrics",
    "log",
    "log_eval",
    "log_perf",
    "log_rollout",
    "log_train_step",
    "publish_rollout",
    "rollout_report",
]
