"""slime's ``slime.rollout.rm_hub``: ``async_rm`` and ``batched_async_rm`` over ``slime.rollout.reward``.

They pick the reward function as slime does (the sample's ``custom_rm_path``, ``--custom-rm-path``, ``--rm-type`` or
the sample's ``rm_type``) and return the reward. Unlike slime's, they also set ``sample.reward``. The reward
functions themselves (``deepscaler``, ``math``, ``f1``, ...) are plugins: ``slime-rewards-math``,
``slime-rewards-text``, ``slime-rewards-remote``.
"""

from typing import Any

from slime.rollout.reward import compute_group_rewards, compute_reward
from slime.types import Sample


async def async_rm(args: Any, sample: Sample, **kwargs: Any) -> float | dict[str, Any]:
    return await compute_reward(args, sample, evaluation=kwargs.get("evaluation", False))


async def batched_async_rm(args: Any, samples: list[Sample], **kwargs: Any) -> list[float | dict[str, Any]]:
    return await compute_group_rewards(args, samples, evaluation=kwargs.get("evaluation", False))
