"""slime's function signatures beside ours, told apart by signature: a function that takes an ``engine`` is ours.

- generate: slime's ``async f(args, sample, sampling_params[, evaluation])``, ours
  ``async f(args, sample, sampling_params, engine[, evaluation])``;
- rollout and eval: slime's ``f(args, rollout_id, data_source, evaluation=False)``, ours
  ``f(args, rollout_id, data_source, engine, evaluation=False)``.

slime's generate functions post to ``args.sglang_router_ip:port`` themselves, or call
``slime.rollout.sglang_rollout.generate``, which reaches the engine of the sample being generated through
``current_engine()``. slime's rollout functions return ``RolloutFnTrainOutput`` / ``RolloutFnEvalOutput`` or, in
slime's older form, a bare list of groups / dict of datasets; ``train_output`` and ``eval_output`` read all of them.
See docs/custom-functions.md.
"""

import argparse
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from slime.backends import RolloutEngine
from slime.errors import SlimeError
from slime.types import Sample, Status

_engine: ContextVar[RolloutEngine] = ContextVar("slime_rollout_engine")


def takes_engine(function: Callable) -> bool:
    """Ours take the engine; slime's reach the engines over HTTP (or through ``current_engine``)."""
    return "engine" in inspect.signature(function).parameters


def accepts(function: Callable, name: str) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def current_engine() -> RolloutEngine:
    """The engine generating the current sample (set around each generate call)."""
    try:
        return _engine.get()
    except LookupError:
        raise SlimeError("slime.rollout.sglang_rollout.generate is called outside a rollout (no engine)") from None


async def call_generate(
    generate: Callable,
    args: argparse.Namespace,
    sample: Sample,
    sampling_params: dict[str, Any],
    engine: RolloutEngine,
    evaluation: bool,
) -> Sample | list[Sample]:
    kwargs = {"evaluation": evaluation} if accepts(generate, "evaluation") else {}
    if takes_engine(generate):
        return await generate(args, sample, sampling_params, engine, **kwargs)
    token = _engine.set(engine)
    try:
        return await generate(args, sample, sampling_params, **kwargs)
    finally:
        _engine.reset(token)


def call_rollout_function(
    function: Callable,
    args: argparse.Namespace,
    rollout_id: int,
    data_source: Any,
    engine: RolloutEngine,
    evaluation: bool = False,
) -> Any:
    if takes_engine(function):
        return function(args, rollout_id, data_source, engine, evaluation=evaluation)
    token = _engine.set(engine)
    try:
        return function(args, rollout_id, data_source, evaluation=evaluation)
    finally:
        _engine.reset(token)


def flatten(samples: Any) -> list[Sample]:
    """Samples of a rollout, in order, from groups (slime's ``list[list[Sample]]``) or deeper fan-out lists."""
    if isinstance(samples, Sample):
        return [samples]
    return [sample for item in samples for sample in flatten(item)]


def train_output(output: Any) -> tuple[list[Sample], dict[str, Any]]:
    """A rollout function's samples and metrics: ours (``RolloutOutput``), ``RolloutFnTrainOutput``, or a bare list."""
    if isinstance(output, list):
        return flatten(output), {}
    return flatten(output.samples), dict(output.metrics or {})


def eval_output(output: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An eval function's results by dataset (samples, or our ``EvalResult``) and its extra metrics.

    slime's datasets are ``{"rewards": [...], "truncated": [...], "samples": [...]}``: their samples are what the
    eval metrics are computed from.
    """
    data, metrics = (output, {}) if isinstance(output, Mapping) else (output.data, dict(output.metrics or {}))
    results = {}
    for name, result in data.items():
        if isinstance(result, Mapping):
            if "samples" not in result:
                raise SlimeError(f"eval dataset {name!r}: the eval function returned no 'samples' for it")
            result = flatten(result["samples"])
        results[name] = result
    return results, metrics


def slime_eval_data(args: argparse.Namespace, results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Eval results (by dataset: samples, or our ``EvalResult``) in slime's form: ``{"rewards", "truncated",
    "samples"}`` per dataset, rewards read with ``--eval-reward-key``."""
    data = {}
    for name, result in results.items():
        samples = getattr(result, "samples", result)
        data[name] = {
            "rewards": [sample.get_reward_value(args.eval_reward_key) for sample in samples],
            "truncated": [sample.status is Status.TRUNCATED for sample in samples],
            "samples": samples,
        }
    return data
