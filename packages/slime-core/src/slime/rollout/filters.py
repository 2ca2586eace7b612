"""Dynamic-sampling filters: decide whether a finished group is kept for training (DAPO-style dynamic sampling)."""

import argparse
import dataclasses
import statistics
from dataclasses import dataclass

from slime.types import Sample


@dataclass(frozen=True)
class FilterOutput:
    keep: bool
    reason: str = "filtered"  # why a group was dropped; counted as rollout/dynamic_filter/drop_<reason>
    # Keep a rejected group anyway when dropping it would leave too few groups (accepted and in flight) to fill the
    # batch: one more sampling round costs more than a group with little signal (slime's field).
    keep_when_insufficient: bool = False


def check_reward_nonzero_std(args: argparse.Namespace, group: list[Sample]) -> FilterOutput:
    """Keep groups whose rewards differ: a group with one reward gives every sample a zero GRPO advantage."""
    rewards = [sample.get_reward_value(args.reward_key) for sample in group]
    if len(rewards) > 1 and statistics.pstdev(rewards) > 1e-6:
        return FilterOutput(keep=True)
    return FilterOutput(keep=False, reason=f"zero_std_{rewards[0]:g}")


def check_reward_nonzero_std_with_fallback(args: argparse.Namespace, group: list[Sample]) -> FilterOutput:
    """``check_reward_nonzero_std``, but a rejected group is kept when dropping it would need another round."""
    return dataclasses.replace(check_reward_nonzero_std(args, group), keep_when_insufficient=True)


def as_filter_output(result: FilterOutput | bool, filter_name: str) -> FilterOutput:
    """Filters may return a bare bool (slime's older form) or a ``FilterOutput``."""
    if isinstance(result, FilterOutput):
        return result
    if isinstance(result, bool):
        return FilterOutput(keep=result)
    raise TypeError(f"sample filter {filter_name} returned {type(result).__name__}; expected FilterOutput or bool")
