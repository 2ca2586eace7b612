"""Hand-built samples whose metrics are worked out by hand in the tests (shared by several test files)."""

import random

from slime.rollout.reward import REWARD_ERROR_KEY
from slime.types import Sample, Status

# A looping response: 12,000 characters that zlib squeezes far more than 10x.
LOOPING = "ab" * 6000
# 12,000 characters of random letters: long, but not repetitive (compression ratio about 1.6).
_rng = random.Random(0)
VARIED = "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(12000))


def sample(group, index, response_length, reward, *, mask=None, status=Status.COMPLETED, response="", **metadata):
    return Sample(
        group_index=group,
        index=index,
        tokens=[7] * (3 + response_length),  # 3 prompt tokens
        response=response,
        response_length=response_length,
        reward=reward,
        loss_mask=mask,
        status=status,
        metadata=dict(metadata),
    )


def rollout_samples() -> list[Sample]:
    """Two prompt groups of four.

    group 0: rewards 1, 0, 1, 0; trained lengths 4, 4 (6 tokens, 2 of them tool output), 2, 8; two truncated;
             the last one's reward function raised.
    group 1: reward 1 on all four (a zero-std group); 10 tokens each; one looping response.
    """
    return [
        sample(0, 0, 4, 1.0, mask=[1, 1, 1, 1], round_number=1),
        sample(0, 1, 6, 0.0, mask=[1, 1, 0, 0, 1, 1], status=Status.TRUNCATED, round_number=2),
        sample(0, 2, 2, 1.0, round_number=1),
        sample(0, 3, 8, 0.0, mask=[1] * 8, status=Status.TRUNCATED, round_number=3, **{REWARD_ERROR_KEY: "timeout"}),
        sample(1, 4, 10, 1.0, response=LOOPING, round_number=1),
        sample(1, 5, 10, 1.0, response=VARIED, round_number=1),
        sample(1, 6, 10, 1.0, round_number=1),
        sample(1, 7, 10, 1.0, round_number=1),
    ]
