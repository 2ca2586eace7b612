"""Reducing per-token loss terms of a packed batch to one scalar.

Layout: a packed batch is the concatenation of its samples' response-only 1-D tensors; ``response_lengths`` gives
each sample's length, in order, and they sum to the packed length.

Two reductions, as in slime. Per-sample mean (default): each sample's masked token sum is divided by the sample's
own mask sum, so long answers do not dominate, and the per-sample means are averaged over samples.
``--calculate-per-token-loss``: the masked sum over all tokens divided by the number of unmasked tokens. A backend
that splits a training step into micro-batches passes the step's counts (``sample_mask_sums`` of each sample, e.g.
its rollout's mask total; ``num_samples``; ``num_tokens``), so that micro-batch results add up to the step's value.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def split_packed(packed: torch.Tensor, response_lengths: Sequence[int]) -> list[torch.Tensor]:
    """A packed 1-D tensor as one tensor (view) per sample."""
    return list(packed.split(list(response_lengths)))


def sample_of_token(response_lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    """For each token of a packed batch, the index of its sample."""
    lengths = torch.tensor(list(response_lengths), device=device, dtype=torch.long)
    return torch.arange(len(response_lengths), device=device).repeat_interleave(lengths)


def per_sample_sum(values: torch.Tensor, mask: torch.Tensor, response_lengths: Sequence[int]) -> torch.Tensor:
    """Each sample's masked sum of ``values``, repeated on every token of the sample (differentiable)."""
    index = sample_of_token(response_lengths, values.device)
    sums = values.new_zeros(len(response_lengths)).index_add(0, index, values * mask.to(values.dtype))
    return sums[index]


def per_sample_mean(values: torch.Tensor, mask: torch.Tensor, response_lengths: Sequence[int]) -> torch.Tensor:
    """Each sample's masked mean of ``values`` on every token of the sample; an all-masked sample gets 0."""
    counts = per_sample_sum(torch.ones_like(values), mask, response_lengths)
    return per_sample_sum(values, mask, response_lengths) / counts.clamp(min=1)


@dataclass(frozen=True)
class Reducer:
    """``reducer(x)`` = the sum over tokens of ``x * loss_mask * token_weight``, a scalar.

    ``token_weights`` holds, for each token, 1 / its sample's denominator, so that one weighted sum implements both
    reductions. ``reducer(x, mask)`` reduces with another mask (e.g. one an importance-weight function narrowed).
    ``step_size``: the step's samples (per-sample mean) or unmasked tokens (per token), what slime divides a
    micro-batch's sum over samples (or tokens) by; a slime-style pg-loss reducer's result is divided by it.
    """

    loss_masks: torch.Tensor
    token_weights: torch.Tensor
    step_size: float = 1.0

    def __call__(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.loss_masks if mask is None else mask
        return (values * mask.to(values.dtype) * self.token_weights.to(values.dtype)).sum()


def make_reducer(
    response_lengths: Sequence[int],
    loss_masks: torch.Tensor,
    calculate_per_token_loss: bool,
    *,
    sample_mask_sums: Sequence[float] | None = None,
    num_samples: int | None = None,
    num_tokens: float | None = None,
) -> Reducer:
    """The reducer of one packed batch (``loss_masks`` packed like the data).

    Per-sample mode divides sample i's sum by ``sample_mask_sums[i] * num_samples`` (defaults: its own mask sum, the
    number of samples here; a zero mask sum counts as 1, so an all-masked sample contributes 0). Per-token mode
    divides every sum by ``num_tokens`` (default: unmasked tokens here, at least 1).
    """
    lengths = torch.tensor(list(response_lengths), device=loss_masks.device)
    if int(lengths.sum()) != loss_masks.numel():
        raise ValueError(f"response lengths sum to {int(lengths.sum())} but the loss mask has {loss_masks.numel()}")
    mask = loss_masks.double()
    if calculate_per_token_loss:
        total = max(float(mask.sum()) if num_tokens is None else float(num_tokens), 1.0)
        weights = torch.full_like(mask, 1.0 / total)
        return Reducer(loss_masks=loss_masks, token_weights=weights, step_size=total)
    if sample_mask_sums is None:
        sums = torch.stack([m.sum() for m in mask.split(lengths.tolist())]) if len(lengths) else mask.new_zeros(0)
    else:
        sums = torch.tensor(list(sample_mask_sums), dtype=torch.float64, device=mask.device)
    n = len(lengths) if num_samples is None else num_samples
    weights = (1.0 / (sums.clamp(min=1.0) * n)).repeat_interleave(lengths)
    return Reducer(loss_masks=loss_masks, token_weights=weights, step_size=float(n))
