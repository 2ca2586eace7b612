"""Reward resolution: which reward function scores a sample, calling it, and what a failing one does to the run.

Priority, as in slime: the sample's own ``custom_rm_path`` (set from an eval dataset's config) -> ``--custom-rm-path``
-> the sample's ``metadata["rm_type"]`` -> ``--rm-type``. Names come from the ``reward_functions`` registry (installed
plugins); anything with a dot is also accepted as an import path, except in ``metadata["rm_type"]``, which comes from
the data rather than from the user's flags. ``boxed_<name>`` scores the last ``\\boxed{}`` of
the response with reward function ``<name>``.

A reward function that raises (or outlives ``args.reward_timeout`` seconds, when set) fails only its sample: the
sample becomes ``Status.FAILED`` with reward 0 and ``metadata["reward_error"]`` holding the one-line error, so a
rollout goes on and counts them (``count_reward_errors``, logged as ``rollout/reward_errors``); a FAILED sample trains
no token and stays out of its group's reward statistics (``slime.rollout.train_batch``). A reward function that
is not async or returns something other than a number or a dict has a bug: that raises ``PluginError`` and stops the
run. So does a ``SlimeError`` raised by the function itself (e.g. a missing flag), as it would fail every sample alike.
"""

import asyncio
import inspect
import logging
import numbers
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from slime.errors import ConfigError, PluginError, SlimeError
from slime.plugins import registry, resolve_with_origin
from slime.types import Sample, Status

logger = logging.getLogger(__name__)

BOXED_PREFIX = "boxed_"
REWARD_ERROR_KEY = "reward_error"  # sample.metadata key holding a failed reward's one-line error
_MAX_ERROR_CHARS = 500

RewardFunction = Callable[[Any, Sample], Awaitable[float | dict[str, Any]]]


@dataclass(frozen=True)
class ResolvedReward:
    """A reward function together with how it was named and where it came from (for error messages)."""

    fn: Callable[..., Any]
    name: str
    origin: str  # "plugin 'x' (distribution d 1.0)" or "from --custom-rm-path"
    boxed: bool = False  # score only the last \boxed{} of the response

    def describe(self) -> str:
        shown = BOXED_PREFIX + self.name if self.boxed else self.name
        return f"reward function '{shown}' ({self.origin})"


def last_boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched; None if there is none.

    ``\\boxed 5`` (no braces) gives the text up to the next ``$``, as slime accepts it.
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start + (6 if text.startswith("\\boxed", start) else 5) :]
    if rest.startswith(" "):
        answer = rest.split("$", 1)[0].strip()
        return answer or None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None  # unbalanced braces: the answer was cut off


def _by_name(name: str, flag: str, importable: bool = True) -> ResolvedReward:
    """A registered reward function (or ``boxed_<name>`` of one); a dotted import path too when ``importable``."""
    base = name.removeprefix(BOXED_PREFIX)
    entries = registry("reward_functions").entries
    if base != name and name not in entries and base in entries:
        fn, origin = resolve_with_origin("reward_functions", base, flag)
        return ResolvedReward(fn, base, origin, boxed=True)
    fn, origin = resolve_with_origin("reward_functions", name, flag, importable=importable)
    return ResolvedReward(fn, name, origin)


def resolve_reward_function(args: Any, sample: Sample | None = None) -> ResolvedReward:
    """The reward function for ``sample`` by slime's priority (see the module docstring)."""
    if sample is not None and sample.custom_rm_path:
        return _by_name(sample.custom_rm_path, "the sample's custom_rm_path")
    if getattr(args, "custom_rm_path", None):
        return _by_name(args.custom_rm_path, "--custom-rm-path")
    if sample is not None and sample.metadata.get("rm_type"):
        # Metadata comes from the data, which the user may not have written: it picks among installed reward
        # functions, but never names code to import.
        return _by_name(str(sample.metadata["rm_type"]), "the sample's metadata rm_type", importable=False)
    if getattr(args, "rm_type", None):
        return _by_name(args.rm_type, "--rm-type")
    raise ConfigError("no reward function: set --rm-type NAME (a registered reward function) or --custom-rm-path")


def reward_key(args: Any, evaluation: bool = False) -> str | None:
    """The key that picks the scalar out of dict rewards: ``--eval-reward-key`` in evaluation, else ``--reward-key``."""
    if evaluation and getattr(args, "eval_reward_key", None):
        return args.eval_reward_key
    return getattr(args, "reward_key", None)


def count_reward_errors(samples: Sequence[Sample]) -> int:
    """How many samples a failing reward function marked (the value of ``rollout/reward_errors``)."""
    return sum(1 for sample in samples if REWARD_ERROR_KEY in sample.metadata)


def _check_reward(reward: Any, source: ResolvedReward, key: str | None, evaluation: bool) -> None:
    if isinstance(reward, dict):
        if key is None:
            return  # a dict is fine until something asks for a scalar (e.g. a custom reward post-process uses it whole)
        flag = "--eval-reward-key" if evaluation else "--reward-key"
        if key not in reward:
            raise ConfigError(
                f"{source.describe()} returned a dict with keys {sorted(reward)}; {flag} {key!r} is not one of them"
            )
        if not isinstance(reward[key], numbers.Real):
            raise PluginError(
                f"{source.describe()} returned {{{key!r}: {reward[key]!r:.80}}} "
                f"({type(reward[key]).__name__}); the value selected by {flag} must be a number"
            )
        return
    if not isinstance(reward, numbers.Real):
        raise PluginError(
            f"{source.describe()} returned {type(reward).__name__} {reward!r:.80}; "
            "a reward function returns a number or a dict of numbers"
        )


def _fail(sample: Sample, source: ResolvedReward, exc: BaseException) -> float:
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = " ".join(message.split())[:_MAX_ERROR_CHARS]  # one line, bounded: it goes into metrics and logs
    sample.status = Status.FAILED
    sample.reward = 0.0
    sample.metadata[REWARD_ERROR_KEY] = message
    logger.warning("%s failed on sample %s: %s", source.describe(), sample.index, message)
    return 0.0


async def _call(source: ResolvedReward, args: Any, scored: Sample | list[Sample], signature: str) -> Any:
    pending = source.fn(args, scored)
    if not inspect.isawaitable(pending):
        raise PluginError(
            f"{source.describe()} returned {type(pending).__name__} instead of an awaitable; it must be '{signature}'"
        )
    timeout = getattr(args, "reward_timeout", None)
    if not timeout:
        return await pending
    try:
        return await asyncio.wait_for(pending, timeout)
    except TimeoutError:
        raise TimeoutError(f"took longer than {timeout} s") from None


async def compute_reward(args: Any, sample: Sample, evaluation: bool = False) -> float | dict[str, Any]:
    """Score one sample, set ``sample.reward`` and return it. A failing reward function fails only this sample."""
    source = resolve_reward_function(args, sample)
    scored = sample
    if source.boxed:
        # The function sees only the boxed answer; the sample itself keeps its full response.
        scored = replace(sample, response=last_boxed_answer(sample.response) or "")
    try:
        reward = await _call(source, args, scored, "async def f(args, sample) -> float | dict")
    except SlimeError:
        raise  # a misconfiguration or a broken plugin stops the run; it would fail every sample alike
    except Exception as exc:
        return _fail(sample, source, exc)
    _check_reward(reward, source, reward_key(args, evaluation), evaluation)
    sample.reward = reward
    return reward


async def compute_group_rewards(
    args: Any, samples: list[Sample], evaluation: bool = False
) -> list[float | dict[str, Any]]:
    """Score a group (``--group-rm``): ``--custom-rm-path`` gets the whole list (``async f(args, samples) -> list``);
    otherwise each sample is scored on its own, concurrently."""
    if not getattr(args, "custom_rm_path", None):
        return list(await asyncio.gather(*(compute_reward(args, sample, evaluation) for sample in samples)))
    source = _by_name(args.custom_rm_path, "--custom-rm-path")
    try:
        rewards = await _call(source, args, samples, "async def f(args, samples) -> list")
    except SlimeError:
        raise
    except Exception as exc:
        return [_fail(sample, source, exc) for sample in samples]
    if not isinstance(rewards, list | tuple) or len(rewards) != len(samples):
        got = f"{len(rewards)} values" if isinstance(rewards, list | tuple) else type(rewards).__name__
        raise PluginError(
            f"{source.describe()} returned {got} for a group of {len(samples)}; --group-rm needs one each"
        )
    key = reward_key(args, evaluation)
    for sample, reward in zip(samples, rewards, strict=True):
        _check_reward(reward, source, key, evaluation)
        sample.reward = reward
    return list(rewards)
