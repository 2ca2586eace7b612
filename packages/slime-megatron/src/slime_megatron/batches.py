"""From a rollout's samples to padded micro-batches, and from logits back to per-sample response log-probs.

Layout: padded. A micro-batch is ``[num_samples, seq_len]`` token ids, right-padded to its longest sample. Causal
attention means a real token never sees the padding after it, so no attention mask is needed and every real token's
logits equal those of the sample alone; padding costs compute only. (Packed THD sequences need TransformerEngine's
attention, which the local layer spec used on CPU does not have.) Micro-batches hold a fixed number of samples
(``--micro-batch-size``) or as many as fit a token budget (``--use-dynamic-batch-size``, ``--max-tokens-per-gpu``).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class MicroBatch:
    sample_ids: list[int]  # positions in the rollout's TrainBatch
    tokens: torch.Tensor  # [b, seq_len] long, right-padded with 0
    position_ids: torch.Tensor  # [b, seq_len]
    total_lengths: list[int]
    response_lengths: list[int]

    @property
    def num_tokens(self) -> int:
        return sum(self.total_lengths)


def split_by_count(sample_ids: list[int], micro_batch_size: int) -> list[list[int]]:
    """Consecutive groups of ``micro_batch_size`` samples (the last may be smaller)."""
    return [sample_ids[start : start + micro_batch_size] for start in range(0, len(sample_ids), micro_batch_size)]


def split_by_tokens(sample_ids: list[int], lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive groups whose padded size (samples x longest) stays within ``max_tokens``.

    A sample longer than the budget gets a micro-batch of its own.
    """
    groups: list[list[int]] = []
    longest = 0
    for i in sample_ids:
        if groups and (len(groups[-1]) + 1) * max(longest, lengths[i]) <= max_tokens:
            groups[-1].append(i)
            longest = max(longest, lengths[i])
        else:
            groups.append([i])
            longest = lengths[i]
    return groups


def split_to_count(groups: list[list[int]], count: int) -> list[list[int]]:
    """``groups`` split further, largest first and in order, until there are ``count`` of them.

    Expert-parallel ranks exchange tokens in every micro-batch, so they must run the same number of micro-batches
    (a rank with fewer leaves its peers waiting forever). Ranks hold equal numbers of samples, so a rank can always
    reach the largest count among them.
    """
    groups = [list(group) for group in groups]
    while len(groups) < count:
        largest = max(range(len(groups)), key=lambda g: len(groups[g]))
        group = groups[largest]
        if len(group) < 2:
            raise ValueError(f"{sum(map(len, groups))} samples cannot make {count} micro-batches")
        groups[largest : largest + 1] = [group[: len(group) // 2], group[len(group) // 2 :]]
    return groups


def balanced_shares(sample_ids: list[int], lengths: list[int], num_shares: int) -> list[list[int]]:
    """``sample_ids`` in ``num_shares`` shares of equal size whose token totals are as even as a greedy pass makes
    them (``--balance-data``): longest sample first, each to the lightest share that still has room."""
    size = len(sample_ids) // num_shares
    shares: list[list[int]] = [[] for _ in range(num_shares)]
    totals = [0] * num_shares
    for i in sorted(sample_ids, key=lambda i: -lengths[i]):
        share = min((s for s in range(num_shares) if len(shares[s]) < size), key=lambda s: totals[s])
        shares[share].append(i)
        totals[share] += lengths[i]
    return [sorted(share) for share in shares]


def make_micro_batches(
    tokens: Sequence[Sequence[int]], response_lengths: list[int], groups: list[list[int]], pad_to_multiple: int = 1
) -> list[MicroBatch]:
    """One padded micro-batch per group of sample ids, its length rounded up to ``pad_to_multiple`` (sequence
    parallelism splits the sequence over tensor-parallel ranks)."""
    batches = []
    for ids in groups:
        seq_len = -(-max(len(tokens[i]) for i in ids) // pad_to_multiple) * pad_to_multiple
        padded = torch.zeros(len(ids), seq_len, dtype=torch.long)
        for row, i in enumerate(ids):
            if response_lengths[i] < 1 or response_lengths[i] >= len(tokens[i]):
                raise ValueError(
                    f"sample {i}: response length {response_lengths[i]} needs 1 <= it < {len(tokens[i])} tokens"
                )
            padded[row, : len(tokens[i])] = torch.tensor(tokens[i], dtype=torch.long)
        batches.append(
            MicroBatch(
                sample_ids=list(ids),
                tokens=padded,
                position_ids=torch.arange(seq_len).expand(len(ids), seq_len),
                total_lengths=[len(tokens[i]) for i in ids],
                response_lengths=[response_lengths[i] for i in ids],
            )
        )
    return batches


def response_logits(logits: torch.Tensor, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed logits ``[num_response_tokens, vocab]`` that predicted each response token, and those tokens.

    Position ``t`` predicts token ``t + 1``, so a response at ``[T - R, T)`` is predicted by ``[T - R - 1, T - 1)``.
    """
    rows, positions = [], []
    for row, (total, response) in enumerate(zip(batch.total_lengths, batch.response_lengths, strict=True)):
        rows.append(torch.full((response,), row, dtype=torch.long))
        positions.append(torch.arange(total - response - 1, total - 1))
    rows_t, positions_t = torch.cat(rows).to(logits.device), torch.cat(positions).to(logits.device)
    targets = batch.tokens.to(logits.device)[rows_t, positions_t + 1]
    return logits[rows_t, positions_t], targets


def pack_samples(
    per_sample: dict[int, torch.Tensor] | None, batch: MicroBatch, device: torch.device
) -> torch.Tensor | None:
    """The micro-batch's samples' 1-D tensors (by sample id) concatenated in its order, as the loss packs its response
    tokens; ``None`` stays ``None`` (a field this rollout did not compute)."""
    if per_sample is None:
        return None
    return torch.cat([per_sample[i] for i in batch.sample_ids]).to(device)
