"""slime's logging hooks, called in the rollout manager where the samples are; True from a hook skips the default
``rollout/*`` (or ``eval/*``) logging of that rollout.

``--custom-rollout-log-function-path``: ``f(rollout_id, args, samples, rollout_extra_metrics, rollout_time) -> bool``.
``--custom-eval-rollout-log-function-path``: ``f(rollout_id, args, data, extra_metrics) -> bool``, ``data`` in slime's
form ``{dataset: {"rewards": [...], "truncated": [...], "samples": [...]}}``.
"""

import argparse
from collections.abc import Mapping
from typing import Any

from slime.plugins import load_object
from slime.rollout.signatures import slime_eval_data
from slime.types import Sample


def custom_rollout_log(
    args: argparse.Namespace, rollout_id: int, samples: list[Sample], metrics: dict[str, Any], rollout_time: float
) -> bool:
    if not args.custom_rollout_log_function_path:
        return False
    log = load_object(args.custom_rollout_log_function_path, "--custom-rollout-log-function-path")
    return bool(log(rollout_id, args, samples, metrics, rollout_time))


def custom_eval_log(
    args: argparse.Namespace, rollout_id: int, results: Mapping[str, Any], metrics: dict[str, Any]
) -> bool:
    if not args.custom_eval_rollout_log_function_path:
        return False
    log = load_object(args.custom_eval_rollout_log_function_path, "--custom-eval-rollout-log-function-path")
    return bool(log(rollout_id, args, slime_eval_data(args, results), metrics))
