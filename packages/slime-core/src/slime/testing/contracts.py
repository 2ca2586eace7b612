"""Contract checks for plugin authors: call these in your own tests to check that a reward function, a sample filter,
a rollout function or a metric sink behaves the way slime calls it.

    from slime.testing.contracts import check_reward_function

    def test_my_reward():
        rewards = check_reward_function("my_reward", [Sample(response="42", label="42")])
        assert rewards == [1.0]

Each check raises ``ContractError`` (an ``AssertionError``, so pytest shows it as a failed assertion) with a message
that says what broke the contract, and otherwise returns what the plugin returned so the test can check values too.
The checks are plain functions; they run async plugins on an event loop of their own. Passing a name instead of a
function resolves it through slime's registries, which also proves that the plugin's entry point registers it.
"""

import argparse
import asyncio
import copy
import inspect
import numbers
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from slime.errors import SlimeError
from slime.plugins import resolve
from slime.types import Sample, Status


class ContractError(AssertionError):
    """A plugin does not honour the contract slime relies on."""


@cache
def _default_args() -> argparse.Namespace:
    # Imported late: building slime's parser loads every installed plugin.
    from slime.config.arguments import build_parser, parse_args

    try:
        return parse_args([])
    except SlimeError:
        return build_parser().parse_args([])  # the defaults, even if some rule wants a flag set


def _args(args: argparse.Namespace | None) -> argparse.Namespace:
    return copy.deepcopy(_default_args()) if args is None else args


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _resolve(kind: str, obj: Any, noun: str) -> tuple[Any, str]:
    if isinstance(obj, str):
        return resolve(kind, obj), f"{noun} '{obj}'"
    if not callable(obj):
        raise ContractError(f"{noun} {obj!r} is not callable")
    return obj, f"{noun} {_name(obj)}"


def _is_async(fn: Callable[..., Any]) -> bool:
    # A callable object counts as async when its __call__ is.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _check_signature(fn: Callable[..., Any], what: str, shape: str, *call_args: Any, **call_kwargs: Any) -> None:
    try:
        inspect.signature(fn).bind(*call_args, **call_kwargs)
    except TypeError as exc:
        raise ContractError(f"{what} cannot be called as {shape}: {exc}") from None
    except ValueError:
        return  # no signature to inspect (some builtins and C extensions): the call itself will tell


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from inside a running loop (an async test): run on a loop of our own in another thread.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def _snapshot(obj: Any) -> Any:
    try:
        return copy.deepcopy(obj)
    except Exception:
        return copy.copy(obj)  # something uncopyable inside: compare what we can


def _sample_changes(before: dict[str, Any], sample: Sample, allowed: Iterable[str]) -> list[str]:
    after = sample.to_dict()
    return [
        f"'{field}' from {before[field]!r:.60} to {after[field]!r:.60}"
        for field in before
        if field not in allowed and before[field] != after[field]
    ]


def _check_samples_untouched(
    what: str, befores: list[dict[str, Any]], samples: Sequence[Sample], allowed: Iterable[str], rule: str
) -> None:
    for i, (before, sample) in enumerate(zip(befores, samples, strict=True)):
        changes = _sample_changes(before, sample, allowed)
        if changes:
            raise ContractError(f"{what} changed sample {i}: {'; '.join(changes)}; {rule}")


def _check_args_untouched(what: str, before: dict[str, Any], args: argparse.Namespace) -> None:
    after = vars(args)
    changed = sorted(key for key in set(before) | set(after) if before.get(key, ...) != after.get(key, ...))
    if changed:
        raise ContractError(f"{what} changed args ({', '.join(changed)}); args are shared by every call and must stay")


def _check_reward_value(what: str, value: Any, where: str) -> None:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it so Python does not warn about it as well
        raise ContractError(f"{what} returned an awaitable for {where}; await inside it and return the reward itself")
    if isinstance(value, dict):
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            raise ContractError(f"{what} returned a dict with non-string keys {bad_keys!r} for {where}")
        if not any(isinstance(v, numbers.Real) for v in value.values()):
            raise ContractError(
                f"{what} returned {value!r:.80} for {where}: a dict reward needs at least one number "
                "for --reward-key to select"
            )
        return
    if not isinstance(value, numbers.Real):
        raise ContractError(
            f"{what} returned {type(value).__name__} {value!r:.60} for {where}; "
            "a reward function returns a number or a dict of numbers"
        )


def check_reward_function(
    fn: Callable[..., Any] | str,
    samples: Sequence[Sample],
    args: argparse.Namespace | None = None,
    *,
    group: bool = False,
    may_modify: Iterable[str] = (),
) -> list[float | dict[str, Any]]:
    """Check a reward function (or a registered name) on ``samples`` and return its rewards, one per sample.

    Contract: ``async def f(args, sample) -> float | dict`` (with ``group=True``, for ``--group-rm``:
    ``async def f(args, samples) -> list``, one reward per sample); it may be called concurrently, as a rollout
    does; it reads the sample and args without changing them (slime sets ``sample.reward`` from the return
    value). Fields the function is meant to write can be listed in ``may_modify``.
    """
    fn, what = _resolve("reward_functions", fn, "reward function")
    args = _args(args)
    samples = list(samples)
    if not samples or not all(isinstance(sample, Sample) for sample in samples):
        raise ContractError("check_reward_function needs a non-empty list of slime.types.Sample")
    shape = "async def f(args, samples) -> list" if group else "async def f(args, sample) -> float | dict"
    if not _is_async(fn):
        raise ContractError(f"{what} is not async; reward functions are '{shape}'")
    _check_signature(fn, what, shape, args, samples if group else samples[0])

    befores = [sample.to_dict() for sample in map(_snapshot, samples)]
    args_before = _snapshot(vars(args))

    async def call_all() -> list[Any]:
        if group:
            return await fn(args, samples)
        return list(await asyncio.gather(*(fn(args, sample) for sample in samples)))

    rewards = _run(call_all())
    if group and (not isinstance(rewards, list | tuple) or len(rewards) != len(samples)):
        got = f"{len(rewards)} rewards" if isinstance(rewards, list | tuple) else type(rewards).__name__
        raise ContractError(f"{what} returned {got} for a group of {len(samples)}; it must return one per sample")
    for i, reward in enumerate(rewards):
        _check_reward_value(what, reward, f"sample {i}")
    _check_samples_untouched(
        what, befores, samples, set(may_modify), "a reward function only reads the sample and returns its reward"
    )
    _check_args_untouched(what, args_before, args)
    return list(rewards)


def check_sample_filter(
    fn: Callable[..., Any] | str, groups: Sequence[Sequence[Sample]], args: argparse.Namespace | None = None
) -> list[Any]:
    """Check a dynamic-sampling filter (or a registered name) on scored ``groups`` and return its verdicts.

    Contract: a plain (not async) ``f(args, group: list[Sample]) -> bool | DynamicFilterOutput``, where a
    ``DynamicFilterOutput``-like object has ``keep: bool`` and ``reason: str | None`` (a non-empty ``reason`` when
    it drops a group, since drops are counted by reason); it judges the group without changing it.
    """
    fn, what = _resolve("sample_filters", fn, "sample filter")
    args = _args(args)
    groups = [list(group) for group in groups]
    if not groups or not all(group and all(isinstance(s, Sample) for s in group) for group in groups):
        raise ContractError("check_sample_filter needs a non-empty list of non-empty groups of slime.types.Sample")
    shape = "f(args, group) -> bool | DynamicFilterOutput"
    if _is_async(fn):
        raise ContractError(f"{what} is async; sample filters are plain functions '{shape}'")
    _check_signature(fn, what, shape, args, groups[0])

    args_before = _snapshot(vars(args))
    verdicts = []
    for g, group in enumerate(groups):
        befores = [sample.to_dict() for sample in map(_snapshot, group)]
        size = len(group)
        verdict = fn(args, group)
        if len(group) != size:
            raise ContractError(f"{what} changed the size of group {g} from {size} to {len(group)}; it must only judge")
        _check_samples_untouched(f"{what} (group {g})", befores, group, (), "a sample filter must only judge")
        _check_filter_verdict(what, verdict, g)
        verdicts.append(verdict)
    _check_args_untouched(what, args_before, args)
    return verdicts


def _check_filter_verdict(what: str, verdict: Any, g: int) -> None:
    if isinstance(verdict, bool):
        return
    if not hasattr(verdict, "keep"):
        raise ContractError(
            f"{what} returned {type(verdict).__name__} {verdict!r:.60} for group {g}; "
            "it must return a bool or an object with 'keep' and 'reason' (DynamicFilterOutput)"
        )
    if not isinstance(verdict.keep, bool):
        raise ContractError(f"{what} returned keep={verdict.keep!r} for group {g}; 'keep' must be a bool")
    reason = getattr(verdict, "reason", None)
    if not verdict.keep and not (isinstance(reason, str) and reason):
        raise ContractError(
            f"{what} dropped group {g} with reason={reason!r}; a drop needs a non-empty string reason "
            "(it names the metric rollout/dynamic_filter/drop_<reason>)"
        )


def _check_rollout_sample(what: str, sample: Any, where: str) -> None:
    if not isinstance(sample, Sample):
        raise ContractError(f"{what} returned {type(sample).__name__} at {where}; expected slime.types.Sample")
    if sample.status is Status.PENDING:
        raise ContractError(f"{what} returned {where} with status PENDING; generated samples have a final status")
    if sample.reward is None:
        raise ContractError(f"{what} returned {where} without a reward; a rollout scores what it returns")
    if sample.response_length > len(sample.tokens):
        raise ContractError(
            f"{what} returned {where} with response_length {sample.response_length} > {len(sample.tokens)} tokens"
        )
    for field in ("loss_mask", "rollout_log_probs"):
        values = getattr(sample, field)
        if values is not None and len(values) != sample.response_length:
            raise ContractError(
                f"{what} returned {where} with {len(values)} {field} entries for "
                f"response_length {sample.response_length}; they must be aligned with the response"
            )


def check_rollout_function(
    fn: Callable[..., Any] | str,
    args: argparse.Namespace,
    data_source: Any,
    *,
    rollout_id: int = 0,
    evaluation: bool = False,
    expected_groups: int | None = None,
) -> Any:
    """Call a rollout function (or a registered name) once and check its output; returns the output.

    Contract: ``f(args, rollout_id, data_source, evaluation=False)`` (plain or async). For training it returns an
    object with ``samples: list[list[Sample]]`` and ``metrics: dict | None`` (a bare list of groups is accepted, as
    slime accepts it), ``expected_groups`` groups when given; every sample has a final status, a reward, and
    ``loss_mask``/``rollout_log_probs`` aligned with its response; a group shares one ``group_index``. For evaluation
    it returns an object with ``data: {dataset: {"rewards", "truncated", "samples"}}`` (lists of one length) and
    ``metrics`` (or the bare dict). It does not change ``args``.
    """
    fn, what = _resolve("rollout_functions", fn, "rollout function")
    shape = "f(args, rollout_id, data_source, evaluation=False)"
    _check_signature(fn, what, shape, args, rollout_id, data_source, evaluation=evaluation)
    args_before = _snapshot(vars(args))

    async def call() -> Any:
        result = fn(args, rollout_id, data_source, evaluation=evaluation)
        return await result if inspect.isawaitable(result) else result

    output = _run(call())
    metrics = getattr(output, "metrics", None)
    if metrics is not None and not isinstance(metrics, dict):
        raise ContractError(f"{what} returned metrics of type {type(metrics).__name__}; expected a dict or None")
    if evaluation:
        _check_eval_output(what, getattr(output, "data", output))
    else:
        _check_train_output(what, getattr(output, "samples", output), expected_groups)
    _check_args_untouched(what, args_before, args)
    return output


def _check_train_output(what: str, groups: Any, expected_groups: int | None) -> None:
    if not isinstance(groups, list) or not all(isinstance(group, list) and group for group in groups):
        raise ContractError(
            f"{what} returned {type(groups).__name__} for training; expected samples as a list of non-empty groups "
            "(list[list[Sample]])"
        )
    if expected_groups is not None and len(groups) != expected_groups:
        raise ContractError(f"{what} returned {len(groups)} groups; expected {expected_groups}")
    for g, group in enumerate(groups):
        for i, sample in enumerate(group):
            _check_rollout_sample(what, sample, f"sample {i} of group {g}")
        indices = {sample.group_index for sample in group}
        if len(indices) > 1:
            raise ContractError(f"{what} returned group {g} mixing group_index values {sorted(indices, key=str)}")


def _check_eval_output(what: str, data: Any) -> None:
    if not isinstance(data, dict) or not data:
        raise ContractError(
            f"{what} returned {type(data).__name__} for evaluation; "
            "expected {dataset: {rewards, truncated, samples}}"
        )
    for name, result in data.items():
        missing = {"rewards", "truncated", "samples"} - set(result if isinstance(result, dict) else ())
        if missing:
            raise ContractError(f"{what} returned eval dataset '{name}' without {sorted(missing)}")
        lengths = {key: len(result[key]) for key in ("rewards", "truncated", "samples")}
        if len(set(lengths.values())) != 1:
            raise ContractError(f"{what} returned eval dataset '{name}' with lists of different lengths {lengths}")
        for i, sample in enumerate(result["samples"]):
            _check_rollout_sample(what, sample, f"sample {i} of eval dataset '{name}'")


def check_metric_sink(sink: Any) -> None:
    """Check a metric sink instance (built as your plugin builds it) by logging a few steps and finishing it.

    Contract: plain (not async) methods ``log(metrics: dict, step_key: str)``, where ``metrics[step_key]`` is the
    step, and ``finish()``; a sink only writes, so it must not change the metrics it is given.
    """
    what = f"metric sink {type(sink).__qualname__}"
    for method in ("log", "finish"):
        if not callable(getattr(sink, method, None)):
            raise ContractError(f"{what} has no method {method}(); sinks have log(metrics, step_key) and finish()")
        if inspect.iscoroutinefunction(getattr(sink, method)):
            raise ContractError(f"{what}.{method} is async; slime calls sinks synchronously")
    _check_signature(sink.log, f"{what}.log", "log(metrics, step_key)", {}, "train/step")
    _check_signature(sink.finish, f"{what}.finish", "finish()")
    steps = [
        ({"train/step": 0, "train/loss": 0.5, "train/grad_norm": 1.0}, "train/step"),
        ({"rollout/step": 0, "rollout/raw_reward": 0.25, "perf/rollout_time": 3.5}, "rollout/step"),
        ({"eval/step": 0, "eval/gsm8k": 0.75, "eval/gsm8k-truncated_ratio": 0.0}, "eval/step"),
        ({"train/step": 1, "train/loss": 0.25, "train/grad_norm": 0.5}, "train/step"),
    ]
    for metrics, step_key in steps:
        before = copy.deepcopy(metrics)
        sink.log(metrics, step_key)
        if metrics != before:
            raise ContractError(f"{what}.log changed the metrics it was given (from {before} to {metrics})")
    sink.finish()
