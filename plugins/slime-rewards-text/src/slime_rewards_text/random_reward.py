"""A coin-flip reward (``--rm-type random``): for testing a pipeline, never for learning."""

import random
from typing import Any

from slime.types import Sample


async def random_reward(args: Any, sample: Sample) -> float:
    """0.0 or 1.0 with equal odds (Python's global ``random``, so ``random.seed`` makes runs repeatable)."""
    return float(random.randint(0, 1))
