"""Response log-probs and entropy from logits whose vocabulary is split over tensor-parallel ranks.

The output layer leaves each TP rank its slice of the (padded) vocabulary, so no rank ever holds whole-vocabulary
logits (a 150k vocabulary in fp32 is most of a micro-batch's memory). The softmax's normaliser and the sampled
token's logit are assembled with all-reduces across the slices: forward all-reduce, backward identity
(megatron's ``reduce_from_tensor_model_parallel_region``), because every TP rank computes the same loss. With one
TP rank this is slime-core's ``log_probs_and_entropy`` itself.
"""

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

from slime.rl.logprobs import log_probs_and_entropy


def vocab_parallel_log_probs(
    logits: torch.Tensor, targets: torch.Tensor, vocab_size: int, temperature: float, entropy: str = "none"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log p(targets[i])`` under ``softmax(logits[i] / temperature)`` over the real vocabulary, and the entropy.

    ``logits`` is ``[num_tokens, local_vocab]``, this TP rank's slice of the padded vocabulary; columns past
    ``vocab_size`` are padding and take no probability. ``entropy`` is ``"none"``, ``"detached"`` (for logging) or
    ``"grad"`` (part of the loss).
    """
    if parallel_state.get_tensor_model_parallel_world_size() == 1:
        return log_probs_and_entropy(logits[:, :vocab_size], targets, temperature, entropy)

    local_vocab = logits.shape[-1]
    start = parallel_state.get_tensor_model_parallel_rank() * local_vocab
    padding = torch.arange(start, start + local_vocab, device=logits.device) >= vocab_size
    scaled = (logits.float() / temperature).masked_fill(padding, float("-inf"))

    # The max only keeps exp() in range: it carries no gradient, so a plain all-reduce suffices.
    shift = scaled.detach().max(dim=-1).values
    dist.all_reduce(shift, op=dist.ReduceOp.MAX, group=parallel_state.get_tensor_model_parallel_group())
    exp = (scaled - shift.unsqueeze(-1)).exp()
    sum_exp = reduce_from_tensor_model_parallel_region(exp.sum(dim=-1))
    log_normaliser = sum_exp.log() + shift

    local = (targets >= start) & (targets < start + local_vocab)
    index = (targets - start).clamp(0, local_vocab - 1).unsqueeze(-1)
    target_logit = torch.where(local, scaled.gather(-1, index).squeeze(-1), 0.0)
    log_probs = reduce_from_tensor_model_parallel_region(target_logit) - log_normaliser
    if entropy == "none":
        return log_probs, None

    with torch.set_grad_enabled(torch.is_grad_enabled() and entropy == "grad"):
        # H = log Z - sum_v p_v z_v. Padding columns have p = 0; zeroing their -inf logits keeps 0 * -inf (NaN)
        # out of the sum and out of its gradient.
        weighted = (exp * scaled.masked_fill(padding, 0.0)).sum(dim=-1)
        entropy_values = log_normaliser - reduce_from_tensor_model_parallel_region(weighted) / sum_exp
    return log_probs, entropy_values


def chunked_log_probs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    vocab_size: int,
    temperature: float,
    chunk_size: int,
    entropy: str = "none",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``vocab_parallel_log_probs`` over ``chunk_size`` tokens at a time (``--log-probs-chunk-size``; -1: all at
    once), so the float32 softmax temporaries of a long response stay bounded."""
    if chunk_size < 1 or len(targets) <= chunk_size:
        return vocab_parallel_log_probs(logits, targets, vocab_size, temperature, entropy)
    parts = [
        vocab_parallel_log_probs(chunk, chunk_targets, vocab_size, temperature, entropy)
        for chunk, chunk_targets in zip(logits.split(chunk_size), targets.split(chunk_size), strict=True)
    ]
    log_probs = torch.cat([part[0] for part in parts])
    return log_probs, None if entropy == "none" else torch.cat([part[1] for part in parts])
