"""slime's ``slime.rollout.rm_hub``: what slime's custom generate functions and multi-agent examples call to score
samples themselves, over the reward step (``slime.rollout.reward``)."""

import asyncio

from slime.config.arguments import parse_args
from slime.rollout.rm_hub import async_rm, batched_async_rm
from slime.utils.types import Sample


async def exact(args, sample: Sample) -> float:
    return float(sample.response.strip() == sample.label)


async def group_share(args, samples: list[Sample]) -> list[float]:
    return [1.0 / len(samples)] * len(samples)


def test_async_rm_and_batched_async_rm_score_as_the_rollout_does():
    args = parse_args(["--custom-rm-path", f"{__name__}.exact"])
    right, wrong = Sample(response=" 4", label="4"), Sample(response="5", label="4")
    assert asyncio.run(async_rm(args, right)) == 1.0 and right.reward == 1.0
    assert asyncio.run(async_rm(args, wrong)) == 0.0
    group_args = parse_args(["--custom-rm-path", f"{__name__}.group_share", "--group-rm"])
    samples = [Sample(index=i) for i in range(4)]
    assert asyncio.run(batched_async_rm(group_args, samples)) == [0.25] * 4
    assert [s.reward for s in samples] == [0.25] * 4
