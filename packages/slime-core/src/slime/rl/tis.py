"""Importance weights that correct for the rollout engine sampling from a slightly different policy (TIS).

An importance-weight function is registered by name through ``slime_register_importance_weights`` and selected with
``--custom-tis-function-path NAME`` (or a dotted import path); ``--use-tis`` turns the correction on. Signature,
all tensors packed 1-D (see ``slime.rl.reduction``)::

    f(args, *, pg_loss, train_log_probs, rollout_log_probs, loss_masks, response_lengths)
        -> (pg_loss, loss_masks, metrics)

``train_log_probs`` are the trainer's log-probs of the policy that generated the rollout (the "old" ones). The
function returns the reweighted per-token ``pg_loss``, the loss mask to reduce it with (it may mask tokens out), and
per-token metric tensors that the policy loss reduces and logs under their names.
"""

import argparse
from collections.abc import Sequence

import torch

DEFAULT_IMPORTANCE_WEIGHTS = "vanilla_tis"


def truncated_importance_weights(
    train_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor, clip: float, clip_low: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clamp(exp(train - rollout), clip_low, clip), raw ratio)``, detached: a weight, never a gradient path."""
    ratio = (train_log_probs - rollout_log_probs).detach().exp()
    return ratio.clamp(clip_low, clip), ratio


def vanilla_tis(
    args: argparse.Namespace,
    *,
    pg_loss: torch.Tensor,
    train_log_probs: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token truncated importance sampling (``--tis-clip``, ``--tis-clip-low``)."""
    weights, ratio = truncated_importance_weights(train_log_probs, rollout_log_probs, args.tis_clip, args.tis_clip_low)
    metrics = {"tis": weights, "tis_clipfrac": (weights != ratio).to(weights.dtype), "ois": ratio}
    return pg_loss * weights, loss_masks, metrics
