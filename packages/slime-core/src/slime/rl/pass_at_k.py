"""pass@k: the chance that at least one of k samples drawn from a prompt's n succeeds, without bias."""

import math
from collections.abc import Callable, Sequence


def reaches_full_reward(reward: float) -> bool:
    """The default success rule: reward >= 1 (a 0/1 reward's 1, and a dapo-style ±1 reward's +1)."""
    return reward >= 1


def group_pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """``1 - C(n - c, k) / C(n, k)`` for one prompt with ``n`` samples of which ``c`` succeeded."""
    if not 1 <= k <= num_samples:
        raise ValueError(f"k must be in [1, {num_samples}], got {k}")
    # Exact integer binomials: no float product to underflow, and C(n - c, k) is 0 when fewer than k failed.
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def pass_at_k(
    rewards: Sequence[float], n: int, success: Callable[[float], bool] = reaches_full_reward
) -> dict[int, float]:
    """pass@k averaged over prompts, for k = 1, 2, 4, ... up to ``n``.

    ``rewards`` holds consecutive groups of ``n`` samples, one group per prompt; ``n`` is the group size of this
    rollout or eval dataset (datasets may differ). ``success`` decides which rewards count as solved.
    """
    if n < 1 or not rewards or len(rewards) % n != 0:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {n}")
    correct = [sum(success(r) for r in rewards[start : start + n]) for start in range(0, len(rewards), n)]
    ks = [2**i for i in range(n.bit_length())]
    return {k: sum(group_pass_at_k(n, c, k) for c in correct) / len(correct) for k in ks}
