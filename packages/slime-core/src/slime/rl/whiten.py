"""Masked whitening of advantages (``--normalize-advantages``), exact across data-parallel ranks."""

from collections.abc import Sequence

import torch
import torch.distributed as dist

WHITEN_EPS = 1e-8


def masked_whiten(
    values: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    group: dist.ProcessGroup | None = None,
) -> list[torch.Tensor]:
    """Shift and scale per-sample values so their unmasked tokens have mean 0 and variance 1.

    Mean and (population) variance are taken over the unmasked tokens of every sample on every rank of ``group``:
    ranks all-reduce their sums and counts, so the result equals whitening all ranks' samples in one process.
    ``group=None`` means no communication (this process's samples only), not the default world group. Every token
    is transformed, masked ones included; their values do not matter because the loss masks them. If no token is
    unmasked anywhere there is nothing to normalise by, and the values come back unchanged.
    """
    device = values[0].device if values else torch.device("cpu")
    lengths = [v.numel() for v in values]
    # Sums in float64: a step holds millions of tokens, and the mean must not drift between layouts.
    flat = torch.cat([v.double() for v in values]) if values else torch.zeros(0, dtype=torch.float64, device=device)
    mask = torch.cat([m.double() for m in masks]) if masks else torch.zeros(0, dtype=torch.float64, device=device)

    sum_and_count = torch.stack([(flat * mask).sum(), mask.sum()])
    _all_reduce(sum_and_count, group)
    total, count = sum_and_count.tolist()
    if count == 0:
        return list(values)
    mean = total / count
    squared_deviation = ((flat - mean).square() * mask).sum()
    _all_reduce(squared_deviation, group)
    variance = squared_deviation.item() / count

    whitened = (flat - mean) / (variance + WHITEN_EPS) ** 0.5
    return [w.to(v.dtype) for w, v in zip(whitened.split(lengths), values, strict=True)]


def _all_reduce(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> None:
    if group is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
