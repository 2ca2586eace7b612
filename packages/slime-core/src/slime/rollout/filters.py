"""Dynamic-sampling filters: decide whether a finished group is kept for training (DAPO-style dynamic sampling)."""

import argparse
import statistics
from dataclasses import dataclass

from slime.types import Sample


@dataclass(frozen=True)
class FilterOutput:
    keep: bool
    reason: str = "filtered"  # why a group was dropped; counted as rollout/dynamic_filter/drop_<reason>


def check_reward_nonzero_std(args: argparse.Namespace, group: list[Sample]) -> FilterOutput:
    """Keep groups whose rewards differ: a group with one reward gives every sample a zero GRPO advantage."""
    rewards = [sample.get_reward_value(args.reward_key) for sample in group]
    if len(rewards) > 1 and statistics.pstdev(rewards) > 1e-6:
        return FilterOutput(keep=True)
    return FilterOutput(keep=False, reason=f"zero_std_{rewards[0]:g}")


def as_filter_output(result: FilterOutput | bool, filter_name: str) -> FilterOutput:
    """Filters may return a bare bool (slime's older form) or a ``FilterOutput``."""
    if isinstance(result, FilterOutput):
        return result
    if isinstance(result, bool):
        return FilterOutput(keep=result)
    raise TypeError(f"sample filter {filter_name} returned {type(result).__name__}; expected FilterOutput or bool")
