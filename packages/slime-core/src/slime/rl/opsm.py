"""Off-Policy Sequence Masking (``--use-opsm``, ``--opsm-delta``), from DeepSeek-V3.2 as slime implements it.

A sequence with a negative advantage whose policy has already moved away from the one that produced it (masked mean
of ``old_log_probs - log_probs`` above ``delta``) is dropped from the policy loss: pushing down a sample the current
policy would no longer generate mostly adds noise. Positive-advantage tokens are always kept.
"""

from collections.abc import Sequence

import torch

from slime.rl.reduction import per_sample_mean


def opsm_keep_mask(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
    delta: float,
) -> torch.Tensor:
    """Per token, 0 where OPSM drops it (``A < 0`` and its sequence's KL > ``delta``), else 1; packed, detached."""
    seq_kl = per_sample_mean((old_log_probs - log_probs).detach(), loss_masks, response_lengths)
    dropped = (advantages < 0) & (seq_kl > delta)
    return (~dropped).to(log_probs.dtype)
