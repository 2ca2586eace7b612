"""slime's custom loss ``f(args, batch, logits, sum_of_sample_mean) -> (loss, metrics)`` on this backend.

slime packs a micro-batch's samples into one sequence, so its losses read ``logits`` of shape ``[1, T, vocab/TP]``
with sample ``i`` at ``[offset_i, offset_i + total_lengths[i])``, and a ``batch`` dict of per-sample lists. Our
micro-batches are padded ``[b, s, vocab/TP]``: ``packed_logits`` concatenates each sample's real positions (slices
and a ``cat``, so gradients flow back into the padded logits) and ``slime_batch`` builds slime's dict, so such a
function runs unchanged. ``get_log_probs_and_entropy`` is slime's helper of the same name (import path
``slime.backends.megatron_utils.loss``) over that layout, with the vocabulary split over TP ranks.

``sum_of_sample_mean`` is slime's: the micro-batch's sum of per-sample masked means (``--calculate-per-token-loss``:
its masked sum over tokens). slime divides the loss and every metric the function returns by the step's samples
(tokens), and so does ``call_slime_loss``: terms reduced with it equal our reducer's, and any other term is scaled
as slime scales it.
"""

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from slime.rl.reduction import Reducer, make_reducer
from slime_megatron.batches import MicroBatch
from slime_megatron.logprobs import chunked_log_probs

SlimeLossFunction = Callable[
    [argparse.Namespace, dict[str, Any], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]],
    tuple[torch.Tensor, dict[str, Any]],
]


def packed_logits(logits: torch.Tensor, batch: MicroBatch) -> torch.Tensor:
    """``[1, sum(total_lengths), vocab/TP]``: each sample's unpadded rows of the padded ``[b, s, vocab/TP]``."""
    rows = [logits[row, :total] for row, total in enumerate(batch.total_lengths)]
    return torch.cat(rows).unsqueeze(0)


def _response_rows(total_lengths: Sequence[int], response_lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    """Rows of the packed logits that predict each response token: position ``t`` predicts token ``t + 1``."""
    rows, offset = [], 0
    for total, response in zip(total_lengths, response_lengths, strict=True):
        rows.append(torch.arange(offset + total - response - 1, offset + total - 1, device=device))
        offset += total
    return torch.cat(rows)


def get_log_probs_and_entropy(
    logits: torch.Tensor,
    *,
    args: argparse.Namespace,
    unconcat_tokens: Sequence[torch.Tensor],
    total_lengths: Sequence[int],
    response_lengths: Sequence[int],
    with_entropy: bool = False,
    non_loss_data: bool = True,
    top_p_token_ids: list[list[int]] | None = None,
    top_p_token_offsets: list[list[int]] | None = None,
) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """slime's helper: each sample's response log-probs (and entropy) from packed logits ``[1, T, vocab/TP]``.

    As slime's: at ``--rollout-temperature``, ``--log-probs-chunk-size`` tokens at a time, entropy with a gradient
    only when ``--entropy-coef`` is not 0, and the result ``(empty tensor, {"log_probs": [...], "entropy": [...]})``
    with one tensor per sample. The vocabulary is split over TP ranks; columns past ``args.vocab_size`` (Megatron's
    padding) take no probability. ``non_loss_data`` is accepted and ignored, as slime asserts it. Rollout top-p
    replay (``top_p_token_ids``) is not supported here.
    """
    if top_p_token_ids is not None or top_p_token_offsets is not None:
        raise NotImplementedError("get_log_probs_and_entropy: rollout top-p replay is not supported by this backend")
    if logits.dim() != 3 or logits.size(0) != 1:
        raise ValueError(f"get_log_probs_and_entropy takes packed logits [1, T, vocab], got {tuple(logits.shape)}")
    rows = _response_rows(total_lengths, response_lengths, logits.device)
    targets = torch.cat(
        [
            tokens[total - response : total]
            for tokens, total, response in zip(unconcat_tokens, total_lengths, response_lengths, strict=True)
        ]
    ).to(logits.device)
    entropy_mode = "none"
    if with_entropy:
        entropy_mode = "grad" if getattr(args, "entropy_coef", 0.0) != 0 else "detached"
    log_probs, entropy = chunked_log_probs(
        logits[0, rows],
        targets,
        args.vocab_size,
        getattr(args, "rollout_temperature", 1.0),
        args.log_probs_chunk_size,
        entropy=entropy_mode,
    )
    result = {"log_probs": list(log_probs.split(list(response_lengths)))}
    if entropy is not None:
        result["entropy"] = list(entropy.split(list(response_lengths)))
    return torch.empty((0,), device=logits.device), result


def slime_batch(
    batch: MicroBatch, fields: dict[str, list[torch.Tensor] | None], device: torch.device
) -> dict[str, Any]:
    """slime's micro-batch dict: per-sample lists (``fields``: ``loss_masks``, ``advantages``, ``log_probs``, ...;
    ``None`` for what this run has not computed) and the packed token stream of ``packed_logits``' layout.

    ``tokens``/``full_loss_masks`` are ``[1, T]`` with ``T = sum(total_lengths)`` (slime pads T further; nothing
    here needs it), the loss mask placed at the positions whose logits predict the response. There is no
    ``packed_seq_params`` (our micro-batches are padded, not packed) and no ``multimodal_train_inputs``.
    """
    unconcat = [batch.tokens[row, :total].to(device) for row, total in enumerate(batch.total_lengths)]
    loss_masks = fields["loss_masks"]
    full_loss_masks = [
        F.pad(mask, (total - response - 1, 1))
        for mask, total, response in zip(loss_masks, batch.total_lengths, batch.response_lengths, strict=True)
    ]
    return {
        "tokens": torch.cat(unconcat).unsqueeze(0),
        "unconcat_tokens": unconcat,
        "total_lengths": list(batch.total_lengths),
        "response_lengths": list(batch.response_lengths),
        "full_loss_masks": torch.cat(full_loss_masks).unsqueeze(0),
        # What sum_of_sample_mean divides each sample by (slime's per-rollout mask totals; here one per sample).
        "rollout_mask_sums": [mask.sum() for mask in loss_masks],
        "packed_seq_params": None,
        "multimodal_train_inputs": None,
        **fields,
    }


def call_slime_loss(
    function: SlimeLossFunction,
    args: argparse.Namespace,
    batch: MicroBatch,
    logits: torch.Tensor,
    fields: dict[str, list[torch.Tensor] | None],
    reducer: Reducer,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run slime's ``function`` on one micro-batch: its share of the step's loss and its metrics, like a loss of ours.

    ``fields`` as ``slime_batch`` takes them; ``reducer``: the step's reducer of this micro-batch, whose
    ``step_size`` is what slime divides by.
    """
    # num_samples=1 / num_tokens=1: slime's micro-batch sum, which is then divided by the step's size as slime does.
    sum_of_sample_mean = make_reducer(
        batch.response_lengths, reducer.loss_masks, args.calculate_per_token_loss, num_samples=1, num_tokens=1
    )
    loss, log = function(
        args, slime_batch(batch, fields, logits.device), packed_logits(logits, batch), sum_of_sample_mean
    )
    metrics = {}
    for name, value in log.items():
        value = torch.as_tensor(value, device=logits.device).detach()
        if value.numel() != 1:
            raise ValueError(
                f"--custom-loss-function-path: metric {name!r} has shape {tuple(value.shape)}, not a scalar"
            )
        metrics[name] = value.reshape(()).double() / reducer.step_size
    return loss / reducer.step_size, metrics
