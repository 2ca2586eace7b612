"""One call per phase of the loop: compute its metrics, let plugins add keys, print slime's console line, log.

Each returns the metrics as logged (with their step key), so the loop and tests can use them.
"""

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from slime.metrics.eval import eval_metrics
from slime.metrics.logger import log, plain_number
from slime.metrics.perf import rollout_perf_metrics, train_perf_metrics
from slime.metrics.rollout import (
    multi_turn_metrics,
    passrate_metrics,
    rollout_metrics,
    trained_lengths,
)
from slime.metrics.steps import EVAL_STEP, ROLLOUT_STEP, TRAIN_STEP, rollout_step, train_step
from slime.plugins import plugin_manager
from slime.types import Sample

console = logging.getLogger("slime.metrics")


def _print(what: str, number: int, metrics: dict[str, Any]) -> None:
    """slime's console line, ``rollout 3: {...}``, with plain numbers (formatted now, before the step is added)."""
    console.info(f"{what} {number}: { ({key: plain_number(key, value) for key, value in metrics.items()}) }")


def _group_rewards(args: argparse.Namespace) -> bool:
    # PPO samples one response per prompt, so "every sample of the group got the same reward" means nothing there.
    return args.advantage_estimator != "ppo"


def log_rollout(args: argparse.Namespace, rollout_id: int, samples: Sequence[Sample], **options: Any) -> dict[str, Any]:
    """``rollout/*`` (+ ``multi_turn/*`` with ``--log-multi-turn``, ``passrate/*`` with ``--log-passrate``, the
    rollout's ``perf/*`` given its time) of one rollout, against ``rollout/step``: ``rollout_report`` (which takes
    ``options``) then ``publish_rollout``, for callers that hold the samples in this process."""
    return publish_rollout(args, rollout_id, rollout_report(args, rollout_id, samples, **options))


def rollout_report(
    args: argparse.Namespace,
    rollout_id: int,
    samples: Sequence[Sample],
    *,
    rollout_time: float | None = None,
    drop_reasons: Mapping[str, int] | None = None,
    train_data: Mapping[str, Sequence[Any]] | None = None,
    loss_masks: Sequence[Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``log_rollout``'s metrics, plugins' keys included, without printing or logging them.

    The rollout manager computes them where the samples are, so a rollout's per-token data never travels to the
    driver just to be averaged; the driver publishes the result with ``publish_rollout``.
    """
    trained = trained_lengths(samples)  # once: several metrics need them
    metrics: dict[str, Any] = dict(extra or {})
    metrics |= rollout_metrics(
        samples,
        reward_key=args.reward_key,
        group_rewards=_group_rewards(args),
        drop_reasons=drop_reasons,
        train_data=train_data,
        loss_masks=loss_masks,
        trained=trained,
    )
    if args.log_multi_turn:
        metrics |= multi_turn_metrics(samples, args.rollout_max_response_len, trained)
    if args.log_passrate:
        rewards = [sample.get_reward_value(args.reward_key) for sample in samples]
        metrics |= passrate_metrics(rewards, args.n_samples_per_prompt)
    if rollout_time is not None:
        metrics |= rollout_perf_metrics(samples, rollout_time, args.rollout_num_gpus, trained)
    plugin_manager().hook.slime_on_rollout_end(args=args, rollout_id=rollout_id, samples=samples, metrics=metrics)
    return metrics


def publish_rollout(args: argparse.Namespace, rollout_id: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Print slime's ``rollout N: {...}`` line and log ``metrics`` against ``rollout/step``."""
    metrics = dict(metrics)
    _print("rollout", rollout_id, metrics)
    metrics[ROLLOUT_STEP] = rollout_step(args, rollout_id)
    return log(args, metrics, ROLLOUT_STEP)


def log_perf(
    args: argparse.Namespace,
    rollout_id: int,
    timings: Mapping[str, float],
    *,
    seq_lens: Sequence[int] | None = None,
    fwd_flops: float | None = None,
    num_gpus: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The trainer's ``perf/*`` of one rollout (phase timings, throughput, TFLOPs), against ``rollout/step``.

    ``extra`` holds what the train backend measured for the rollout itself: its ``perf/*`` (e.g. log-prob and
    actor-train times) and the ``rollout/*`` means of its training data.
    """
    metrics: dict[str, Any] = dict(extra or {})
    metrics |= train_perf_metrics(timings, seq_lens=seq_lens, fwd_flops=fwd_flops, num_gpus=num_gpus)
    _print("perf", rollout_id, metrics)
    metrics[ROLLOUT_STEP] = rollout_step(args, rollout_id)
    return log(args, metrics, ROLLOUT_STEP)


def log_train_step(args: argparse.Namespace, rollout_id: int, step_id: int, metrics: Mapping[str, Any]) -> dict:
    """One optimizer step's ``train/*`` (keys without the prefix get it), against ``train/step``."""
    train = {key if key.startswith("train/") else f"train/{key}": value for key, value in metrics.items()}
    plugin_manager().hook.slime_on_train_step_end(args=args, rollout_id=rollout_id, step_id=step_id, metrics=train)
    step = train_step(args, rollout_id, step_id)
    _print("step", step, train)
    train[TRAIN_STEP] = step
    return log(args, train, TRAIN_STEP)


def log_eval(
    args: argparse.Namespace,
    rollout_id: int,
    results: Mapping[str, Any],
    *,
    n_samples_per_prompt: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``eval/*`` of one evaluation, against ``eval/step``: ``eval_report`` then ``publish_eval``, for callers that
    hold the samples in this process."""
    report = eval_report(args, rollout_id, results, n_samples_per_prompt=n_samples_per_prompt, extra=extra)
    return publish_eval(args, rollout_id, report)


def eval_report(
    args: argparse.Namespace,
    rollout_id: int,
    results: Mapping[str, Any],
    *,
    n_samples_per_prompt: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``log_eval``'s metrics, plugins' keys included, without printing or logging them.

    As ``rollout_report``: the rollout manager computes them where the samples are and the driver publishes them.
    ``results`` maps each dataset's name to its samples, or to an ``EvalResult`` (``.samples`` and the dataset's own
    ``.n_samples_per_prompt``, as the eval function returns). Group sizes come from ``n_samples_per_prompt``, else
    from the results, else ``--n-samples-per-eval-prompt``.
    """
    samples = {name: getattr(result, "samples", result) for name, result in results.items()}
    group_sizes = n_samples_per_prompt or {
        name: getattr(result, "n_samples_per_prompt", args.n_samples_per_eval_prompt)
        for name, result in results.items()
    }
    metrics: dict[str, Any] = dict(extra or {})
    metrics |= eval_metrics(
        samples,
        group_sizes,
        reward_key=args.eval_reward_key,
        log_passrate=args.log_passrate,
        group_rewards=_group_rewards(args),
    )
    plugin_manager().hook.slime_on_eval_end(args=args, rollout_id=rollout_id, results=results, metrics=metrics)
    return metrics


def publish_eval(args: argparse.Namespace, rollout_id: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Print slime's ``eval N: {...}`` line and log ``metrics`` against ``eval/step``."""
    metrics = dict(metrics)
    _print("eval", rollout_id, metrics)
    metrics[EVAL_STEP] = rollout_step(args, rollout_id)
    return log(args, metrics, EVAL_STEP)
