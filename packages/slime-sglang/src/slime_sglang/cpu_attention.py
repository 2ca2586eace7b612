"""SGLang's ``torch_native`` CPU attention, batched: one SDPA call per layer instead of one per request.

SGLang's CPU attention (``torch_native``) loops over the requests of a batch in Python in every layer, for prefill
and for decode, one small ``scaled_dot_product_attention`` call each: with 256 requests that loop was ~77 % of the
scheduler's time (py-spy, 1M-parameter model). Here each forward pass lays its requests out once as a padded batch
(every request's cached-token slots, its query rows, a causal mask that also hides the padding), and each layer
makes one SDPA call over it. Decode is the case of one query row per request.

A padded batch is not batch-invariant to the last bit (a request's sums run over a padded length that depends on
its neighbours), so under ``--enable-deterministic-inference`` SGLang's per-request loop stays; so do the cases it
handles specially (sliding windows, encoder-decoder and non-causal models, SWA pools, speculative modes) and batches
that would be mostly padding.
"""

from dataclasses import dataclass

import torch
from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode


@dataclass
class PaddedBatch:
    slots: torch.Tensor  # [batch, longest kv]: KV-pool slot of each cached token; padding reads slot 0
    query_rows: torch.Tensor  # [batch, longest query]: row of each query token in the flat query; padding 0
    valid_rows: torch.Tensor  # [tokens]: position of each real query token in the flattened [batch, longest query]
    mask: torch.Tensor  # [batch, 1, longest query, longest kv]: True where a query may attend


def padded_batch(
    req_to_token: torch.Tensor, req_pool_indices: torch.Tensor, seq_lens: torch.Tensor, query_lens: torch.Tensor
) -> PaddedBatch:
    """Lay out requests whose last ``query_lens[b]`` of ``seq_lens[b]`` tokens are queries (causal)."""
    kv_positions = torch.arange(int(seq_lens.max()), device=seq_lens.device)
    query_offsets = torch.arange(int(query_lens.max()), device=seq_lens.device)
    kv_valid = kv_positions[None, :] < seq_lens[:, None]
    query_valid = query_offsets[None, :] < query_lens[:, None]
    first_rows = torch.cumsum(query_lens, 0) - query_lens
    query_rows = (first_rows[:, None] + query_offsets[None, :]).masked_fill(~query_valid, 0)
    # A padding query row sits past its request's end, so it sees all of the request's keys: never an empty row.
    query_positions = (seq_lens - query_lens)[:, None] + query_offsets[None, :]
    mask = (kv_positions[None, None, :] <= query_positions[:, :, None]) & kv_valid[:, None, :]
    slots = req_to_token[req_pool_indices, : len(kv_positions)].masked_fill(~kv_valid, 0)
    valid_rows = query_valid.flatten().nonzero().squeeze(1)
    return PaddedBatch(slots, query_rows, valid_rows, mask[:, None])


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 2-D ``index``, through ``index_select``: on CPU it copies whole rows and is ~4x faster
    than advanced indexing, which copies element by element (measured for KV-pool rows of 2 x 64 floats)."""
    return table.index_select(0, index.flatten()).view(*index.shape, *table.shape[1:])


def padding_dominates(seq_lens: torch.Tensor, query_lens: torch.Tensor) -> bool:
    """Whether the padded batch would hold far more query x key pairs than its requests do (a long prompt next to
    many short requests, e.g. a prefill chunk mixed with decodes): its memory and time grow with the padding, SGLang's
    loop only with the requests, so that batch keeps the loop."""
    padded = len(seq_lens) * int(query_lens.max()) * int(seq_lens.max())
    needed = int((query_lens * seq_lens).sum())
    return padded > 4 * needed + 65_536


class BatchedAttnBackend(TorchNativeAttnBackend):
    def __init__(self, model_runner) -> None:
        super().__init__(model_runner)
        self.batched = not model_runner.server_args.enable_deterministic_inference
        self.padded: PaddedBatch | None = None

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        super().init_forward_metadata(forward_batch)
        self.padded = None
        mode = forward_batch.forward_mode
        plain = forward_batch.encoder_lens is None and not self.use_sliding_window_kv_pool
        if not (self.batched and plain and (mode.is_decode() or mode in (ForwardMode.EXTEND, ForwardMode.MIXED))):
            return
        seq_lens = forward_batch.seq_lens
        query_lens = (torch.ones_like(seq_lens) if mode.is_decode() else forward_batch.extend_seq_lens).to(seq_lens)
        if padding_dominates(seq_lens, query_lens):
            return
        self.padded = padded_batch(
            self.req_to_token_pool.req_to_token, forward_batch.req_pool_indices, seq_lens, query_lens
        )

    def _run_sdpa_forward_extend(self, query, output, k_cache, v_cache, *args, **kwargs):
        if self._special(kwargs) or not kwargs.get("causal"):
            return super()._run_sdpa_forward_extend(query, output, k_cache, v_cache, *args, **kwargs)
        return self._attend(query, output, k_cache, v_cache, kwargs)

    def _run_sdpa_forward_decode(self, query, output, k_cache, v_cache, *args, **kwargs):
        if self._special(kwargs):
            return super()._run_sdpa_forward_decode(query, output, k_cache, v_cache, *args, **kwargs)
        return self._attend(query, output, k_cache, v_cache, kwargs)

    def _special(self, kwargs: dict) -> bool:
        return self.padded is None or kwargs.get("is_cross_attn") or kwargs.get("sliding_window_size") is not None

    def _attend(self, query, output, k_cache, v_cache, kwargs: dict) -> torch.Tensor:
        # query [tokens, heads, dim] -> [batch, heads, longest query, dim]; the cache likewise with kv heads
        padded = self.padded
        queries = gather_rows(query, padded.query_rows).transpose(1, 2)
        keys = gather_rows(k_cache, padded.slots).transpose(1, 2).to(query.dtype)
        values = gather_rows(v_cache, padded.slots).transpose(1, 2).to(query.dtype)
        attended = torch.nn.functional.scaled_dot_product_attention(
            queries, keys, values, attn_mask=padded.mask, scale=kwargs.get("scaling"),
            enable_gqa=kwargs.get("enable_gqa", False),
        )  # fmt: skip
        attended = attended.transpose(1, 2).flatten(0, 1)  # [batch * longest query, heads, dim]
        output.copy_(attended.index_select(0, padded.valid_rows).view_as(output))
        return output
