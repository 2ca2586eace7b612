"""Masked/clipped/truncated importance sampling with rejection sampling (MIS), registered as ``mis``.

slime's ``examples/train_infer_mismatch_helper/mis.py`` (``compute_mis_weights``), driven by the same settings,
here flags: the weight ``exp(log pi_train - log pi_rollout)`` is taken per token, per sequence (product) or as the
sequence's geometric mean (``--tis-level``), then truncated to ``--tis-upper-bound``, clipped to
``[--tis-lower-bound, --tis-upper-bound]`` or masked outside it (``--tis-mode``). ``--use-rs`` also drops tokens (or
sequences, ``--rs-level``) whose ratio leaves ``[--rs-lower-bound, --rs-upper-bound]``, and ``--rs-veto-threshold``
drops any sequence with one token below it. ``--tis-batch-normalize`` rescales the weights to mean 1 over the
(micro-)batch. Dropped tokens leave the loss's numerator but keep their place in its denominators. Metrics carry
slime's ``mis_`` names, plus the mismatch metrics of ``slime.rl.mismatch``.
"""

import argparse
import math
from collections.abc import Sequence

import torch

from slime.rl.mismatch import SAFETY_BOUND, mismatch_metrics
from slime.rl.reduction import per_sample_mean, per_sample_sum, split_packed


def level_log_ratio(
    log_ratio: torch.Tensor, mask: torch.Tensor, response_lengths: Sequence[int], level: str
) -> torch.Tensor:
    """The log weight of each token at ``level``: its own, its sequence's sum, or its sequence's mean."""
    if level == "token":
        return log_ratio
    if level == "sequence":
        return per_sample_sum(log_ratio, mask, response_lengths)
    if level == "geometric":
        return per_sample_mean(log_ratio, mask, response_lengths)
    raise ValueError(f"unknown importance-sampling level {level!r}; expected token, sequence or geometric")


def bounded_weights(log_ratio: torch.Tensor) -> torch.Tensor:
    """``exp(log_ratio)`` with the log clamped to +-20, as slime does, so a sequence-level sum cannot overflow."""
    return log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp()


def per_sample_extreme(
    values: torch.Tensor, mask: torch.Tensor, response_lengths: Sequence[int], largest: bool
) -> torch.Tensor:
    """Each sample's masked min (or max), repeated on its tokens; 0 for an all-masked sample, as slime."""
    rows = []
    for row, row_mask in zip(split_packed(values, response_lengths), split_packed(mask, response_lengths), strict=True):
        kept = row[row_mask.bool()]
        extreme = (kept.max() if largest else kept.min()) if kept.numel() else row.new_zeros(())
        rows.append(extreme.expand_as(row))
    return torch.cat(rows) if rows else values.new_zeros(0)


def mis(
    args: argparse.Namespace,
    *,
    pg_loss: torch.Tensor,
    train_log_probs: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Reweight ``pg_loss`` and narrow the loss mask as the MIS flags say; see the module docstring."""
    mask = loss_masks.to(pg_loss.dtype)
    log_ratio = (train_log_probs - rollout_log_probs).detach().to(pg_loss.dtype)
    metrics = mismatch_metrics(train_log_probs, rollout_log_probs, loss_masks, response_lengths)
    upper = args.tis_upper_bound
    lower = args.tis_lower_bound if args.tis_lower_bound is not None else 1.0 / upper
    keep = mask.clone()

    tis_log_ratio = level_log_ratio(log_ratio, mask, response_lengths, args.tis_level)
    weights = bounded_weights(tis_log_ratio)
    metrics["mis_tis_weight_before_bound"] = weights
    if args.tis_mode == "truncate":
        metrics["mis_tis_truncate_fraction"] = (weights > upper).to(mask.dtype)
        weights = weights.clamp(0, upper) * mask
    elif args.tis_mode == "clip":
        metrics["mis_tis_clip_fraction_low"] = (weights < lower).to(mask.dtype)
        metrics["mis_tis_clip_fraction_high"] = (weights > upper).to(mask.dtype)
        weights = weights.clamp(lower, upper) * mask
    elif args.tis_mode == "mask":
        metrics["mis_tis_mask_fraction_low"] = (weights < lower).to(mask.dtype)
        metrics["mis_tis_mask_fraction_high"] = (weights > upper).to(mask.dtype)
        keep = keep * ((weights >= lower) & (weights <= upper)).to(mask.dtype)
        weights = weights * mask  # masked tokens keep their (unbounded) weight; the mask drops them
    else:
        raise ValueError(f"unknown --tis-mode {args.tis_mode!r}; expected truncate, clip or mask")
    metrics["mis_tis_weight_after_bound"] = weights

    if args.use_rs:
        rs_upper = args.rs_upper_bound if args.rs_upper_bound is not None else upper
        rs_lower = args.rs_lower_bound if args.rs_lower_bound is not None else lower
        rs_weights = bounded_weights(level_log_ratio(log_ratio, mask, response_lengths, args.rs_level))
        metrics["mis_rs_mask_fraction_low"] = (rs_weights < rs_lower).to(mask.dtype)
        metrics["mis_rs_mask_fraction_high"] = (rs_weights > rs_upper).to(mask.dtype)
        keep = keep * ((rs_weights >= rs_lower) & (rs_weights <= rs_upper)).to(mask.dtype)
        if args.rs_veto_threshold is not None:
            # One token the trainer finds far less likely than the engine did vetoes its whole sequence.
            catastrophic = ((log_ratio < math.log(args.rs_veto_threshold)) & mask.bool()).to(mask.dtype)
            vetoed = (per_sample_sum(catastrophic, mask, response_lengths) > 0).to(mask.dtype)
            metrics["mis_rs_catastrophic_token_fraction"] = catastrophic
            metrics["mis_rs_catastrophic_seq_fraction"] = vetoed
            keep = keep * (1 - vetoed)
    metrics["mis_is_ratio_mean_after_tis_rs"] = weights

    if args.tis_batch_normalize:
        if args.tis_level == "token":
            mean = (weights * mask).sum() / mask.sum().clamp(min=1)
        else:  # one weight per sequence: their mean over sequences (slime has no geometric case; it is per sequence)
            rows = split_packed(weights * mask, response_lengths)
            row_masks = split_packed(mask, response_lengths)
            mean = torch.stack([w.sum() / m.sum().clamp(min=1) for w, m in zip(rows, row_masks, strict=True)]).mean()
        if mean > 1e-8:
            weights = weights / mean
            metrics["mis_batch_norm_factor"] = mean.expand_as(weights)
        else:
            metrics["mis_batch_norm_factor"] = torch.ones_like(weights)

    metrics["mis_is_ratio_mean_final"] = per_sample_mean(weights, mask, response_lengths)
    metrics["mis_is_ratio_min_final"] = per_sample_extreme(weights, mask, response_lengths, largest=False)
    metrics["mis_is_ratio_max_final"] = per_sample_extreme(weights, mask, response_lengths, largest=True)
    return pg_loss * weights, keep, metrics
