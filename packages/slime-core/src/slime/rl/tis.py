"""Importance weights that correct for the rollout engine sampling from a slightly different policy (TIS).

An importance-weight function is registered by name through ``slime_register_importance_weights`` and selected with
``--custom-tis-function-path NAME`` (or a dotted import path); ``--use-tis`` turns the correction on. Signature,
all tensors packed 1-D (see ``slime.rl.reduction``)::

    f(args, *, pg_loss, train_log_probs, rollout_log_probs, loss_masks, response_lengths)
        -> (pg_loss, loss_masks, metrics)

``train_log_probs`` are the trainer's log-probs of the policy that generated the rollout (the "old" ones). The
function returns the reweighted per-token ``pg_loss``, the loss mask to reduce it with (it may mask tokens out), and
per-token metric tensors that the policy loss reduces with the original loss mask and logs under their names.
Registered here: ``vanilla_tis`` (the default) and ``icepop``; MIS is in ``slime.rl.mis``.
"""

import argparse
from collections.abc import Sequence

import torch

DEFAULT_IMPORTANCE_WEIGHTS = "vanilla_tis"


def importance_ratio(train_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor) -> torch.Tensor:
    """``exp(train - rollout)`` per token, detached: a weight, never a gradient path."""
    return (train_log_probs - rollout_log_probs).detach().exp()


def ratio_metrics(ratio: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """slime's TIS metrics: the raw ratio (``tis``), where the weight differs from it, and ``|ratio - 1|``."""
    return {"tis": ratio, "tis_clipfrac": (weights != ratio).to(ratio.dtype), "tis_abs": (ratio - 1).abs()}


def vanilla_tis(
    args: argparse.Namespace,
    *,
    pg_loss: torch.Tensor,
    train_log_probs: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token truncated importance sampling: weight ``clamp(ratio, --tis-clip-low, --tis-clip)``.

    Yao et al., "Your efficient RL framework secretly brings you off-policy RL training" (slime's
    ``vanilla_tis_function``).
    """
    ratio = importance_ratio(train_log_probs, rollout_log_probs)
    weights = ratio.clamp(args.tis_clip_low, args.tis_clip)
    return pg_loss * weights, loss_masks, ratio_metrics(ratio, weights)


def icepop(
    args: argparse.Namespace,
    *,
    pg_loss: torch.Tensor,
    train_log_probs: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """IcePop (Ling team, Ring-1T): keep the ratio as the weight inside ``[--tis-clip-low, --tis-clip]``, 0 outside.

    Unlike truncation, a token whose engine and trainer probabilities disagree too much gets no gradient at all;
    its mask is kept, so it still counts in the denominators (slime's ``icepop_function``).
    """
    ratio = importance_ratio(train_log_probs, rollout_log_probs)
    inside = (ratio >= args.tis_clip_low) & (ratio <= args.tis_clip)
    weights = torch.where(inside, ratio, torch.zeros_like(ratio))
    return pg_loss * weights, loss_masks, ratio_metrics(ratio, weights)
