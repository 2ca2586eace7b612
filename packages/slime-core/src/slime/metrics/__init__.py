"""Metric computation and logging, with slime's names and step keys.

Pure computation: ``rollout`` (``rollout/*``, ``multi_turn/*``, ``passrate/*``), ``eval`` (``eval/*``), ``perf``
(``perf/*``), ``steps`` (step keys). Logging: ``logger`` (the dispatcher to every active sink), ``sinks`` (the sink
contract and the always-on JSONL sink), ``publish`` (per loop phase: ``*_report`` computes a phase's metrics, plugin
hooks included, where its samples are (the rollout manager); ``publish_*`` prints and logs them in the driver;
``log_*`` does both in one process).
"""

from slime.metrics.logger import MetricLogger, finish_metrics, init_metrics, log
from slime.metrics.publish import (
    eval_report,
    log_eval,
    log_perf,
    log_rollout,
    log_train_step,
    publish_eval,
    publish_rollout,
    rollout_report,
)

__all__ = [
    "MetricLogger",
    "eval_report",
    "finish_metrics",
    "init_metrics",
    "log",
    "log_eval",
    "log_perf",
    "log_rollout",
    "log_train_step",
    "publish_eval",
    "publish_rollout",
    "rollout_report",
]
