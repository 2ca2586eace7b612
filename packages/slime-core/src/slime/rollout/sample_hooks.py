"""``--rollout-sample-hook-path`` (repeatable): hooks run on each generated sample, in order, before its reward.

slime's signature: ``hook(args, sample, *, rollout_id=None, evaluation=False) -> Sample | None``, sync or async; a
hook gets the keywords its signature names, and a returned ``Sample`` replaces the one it was given. A generate
function's fan-out list is walked leaf by leaf and keeps its shape.
"""

import argparse
import inspect
from contextvars import ContextVar
from typing import Any

from slime.errors import PluginError
from slime.plugins import resolve
from slime.rollout.signatures import accepts
from slime.types import Sample

FLAG = "--rollout-sample-hook-path"

# The rollout (or eval) being generated: set by the rollout and eval functions, read by the hooks' rollout_id.
current_rollout_id: ContextVar[int | None] = ContextVar("slime_rollout_id", default=None)


async def apply_sample_hooks(
    args: argparse.Namespace, result: Sample | list[Any], evaluation: bool
) -> Sample | list[Any]:
    paths = args.rollout_sample_hook_path or []
    if not paths:
        return result
    if isinstance(result, list):
        return [await apply_sample_hooks(args, item, evaluation) for item in result]
    keywords = {"rollout_id": current_rollout_id.get(), "evaluation": evaluation}
    for path in paths:
        hook = resolve("generate_functions", path, FLAG)
        replacement = hook(args, result, **{k: v for k, v in keywords.items() if accepts(hook, k)})
        if inspect.isawaitable(replacement):
            replacement = await replacement
        if replacement is not None:
            if not isinstance(replacement, Sample):
                raise PluginError(f"{FLAG} {path} returned {type(replacement).__name__}; expected a Sample or None")
            result = replacement
    return result
