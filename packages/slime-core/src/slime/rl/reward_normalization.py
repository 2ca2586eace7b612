"""Reward post-processing: from samples' scalar rewards to the rewards the advantage estimators consume.

Samples arrive in prompt groups of ``n_samples_per_prompt`` consecutive entries, as the data source produces them.
"""

import argparse
from collections.abc import Sequence

import torch

# The estimators whose rewards are centred within each prompt group, and those among them that are also scaled.
GROUP_CENTRED_ESTIMATORS = frozenset({"grpo", "gspo", "cispo", "reinforce_plus_plus_baseline"})
GROUP_SCALED_ESTIMATORS = frozenset({"grpo", "gspo", "cispo"})

GRPO_STD_EPS = 1e-6


def group_normalize(
    rewards: Sequence[float], group_size: int, scale_by_std: bool, valid: Sequence[bool] | None = None
) -> list[float]:
    """Subtract each group's mean reward; with ``scale_by_std`` also divide by its (Bessel-corrected) std + 1e-6.

    Groups are consecutive runs of ``group_size`` rewards. A group whose rewards are all equal becomes all zeros.
    ``valid`` marks the rewards that are scores: the others (samples whose reward failed) are left out of their
    group's mean and std and become 0; a group with fewer than two scores becomes all zeros.
    """
    if group_size < 1 or len(rewards) % group_size != 0:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    if scale_by_std and group_size < 2:
        raise ValueError("the std of a group of one sample is undefined; turn std scaling off for group size 1")
    grouped = torch.tensor(rewards, dtype=torch.float64).reshape(-1, group_size)
    if valid is None or all(valid):  # the plain formula: runs without failed rewards keep their numbers to the bit
        centred = grouped - grouped.mean(dim=1, keepdim=True)
        if scale_by_std:
            centred = centred / (grouped.std(dim=1, keepdim=True) + GRPO_STD_EPS)
        return centred.flatten().tolist()
    mask = torch.tensor(valid, dtype=torch.float64).reshape(-1, group_size)
    counts = mask.sum(dim=1, keepdim=True)
    centred = (grouped - (grouped * mask).sum(dim=1, keepdim=True) / counts.clamp(min=1)) * mask
    centred = torch.where(counts > 1, centred, 0.0)
    if scale_by_std:
        std = ((centred**2).sum(dim=1, keepdim=True) / (counts - 1).clamp(min=1)).sqrt()
        centred = centred / (std + GRPO_STD_EPS)
    return centred.flatten().tolist()


def postprocess_rewards(
    args: argparse.Namespace, rewards: Sequence[float], valid: Sequence[bool] | None = None
) -> list[float]:
    """The rewards the estimator trains on: group-normalised for GRPO-family estimators, unchanged otherwise.

    Centring is off with ``--disable-rewards-normalization``; std scaling (grpo/gspo/cispo only) is off with
    ``--disable-grpo-std-normalization`` and whenever ``--n-samples-per-prompt`` is 1. ``valid``: see
    ``group_normalize``.
    """
    if args.disable_rewards_normalization or args.advantage_estimator not in GROUP_CENTRED_ESTIMATORS:
        return list(rewards)
    n = args.n_samples_per_prompt
    scale = args.advantage_estimator in GROUP_SCALED_ESTIMATORS and not args.disable_grpo_std_normalization and n > 1
    return group_normalize(rewards, n, scale, valid)
