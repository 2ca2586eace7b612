"""The batched CPU attention gives what SGLang's per-request ``torch_native`` loop gives, for prefill (with cached
prefixes) and decode, with grouped-query heads and requests of different lengths scattered over the KV pool."""

from types import SimpleNamespace

import pytest
import torch
from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.srt.model_executor.forward_batch_info import ForwardMode

from slime_sglang.cpu_attention import BatchedAttnBackend, padding_dominates

HEADS, KV_HEADS, DIM, SLOTS, MAX_CONTEXT = 4, 2, 8, 129, 32


def backends(deterministic: bool = False) -> tuple[BatchedAttnBackend, TorchNativeAttnBackend, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    # Each request's tokens sit in distinct, shuffled KV slots (slot 0 stays SGLang's unused dummy).
    # int32, as SGLang's ReqToTokenPool holds them.
    slots = torch.randperm(SLOTS - 1, generator=generator)[: 4 * MAX_CONTEXT] + 1
    req_to_token = slots.to(torch.int32).view(4, MAX_CONTEXT)
    runner = SimpleNamespace(
        device="cpu",
        req_to_token_pool=SimpleNamespace(req_to_token=req_to_token),
        token_to_kv_pool=object(),
        server_args=SimpleNamespace(enable_deterministic_inference=deterministic),
    )
    return BatchedAttnBackend(runner), TorchNativeAttnBackend(runner), req_to_token


def forward_batch(mode: ForwardMode, seq_lens: list[int], extend_lens: list[int] | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        forward_mode=mode,
        encoder_lens=None,
        out_cache_loc=None,
        seq_lens=torch.tensor(seq_lens),
        req_pool_indices=torch.tensor([2, 0, 3, 1][: len(seq_lens)]),
        extend_seq_lens=None if extend_lens is None else torch.tensor(extend_lens),
    )


def caches_and_query(tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    k_cache = torch.randn(SLOTS, KV_HEADS, DIM, generator=generator)
    v_cache = torch.randn(SLOTS, KV_HEADS, DIM, generator=generator)
    return k_cache, v_cache, torch.randn(tokens, HEADS, DIM, generator=generator)


@pytest.mark.parametrize(
    "seq_lens, extend_lens",
    [([5, 1, 17, 9], [5, 1, 17, 9]), ([12, 3, 20, 7], [4, 3, 1, 6])],  # fresh prompts; prompts with cached prefixes
    ids=["prefill", "prefill-after-cached-prefix"],
)
def test_prefill_matches_the_per_request_loop(seq_lens: list[int], extend_lens: list[int]) -> None:
    batched, looped, req_to_token = backends()
    batch = forward_batch(ForwardMode.EXTEND, seq_lens, extend_lens)
    batched.init_forward_metadata(batch)
    k_cache, v_cache, query = caches_and_query(sum(extend_lens))
    prefix_lens = batch.seq_lens - batch.extend_seq_lens
    args = (req_to_token, batch.req_pool_indices, batch.seq_lens, prefix_lens, batch.extend_seq_lens)
    options = {"scaling": DIM**-0.5, "enable_gqa": True, "causal": True}
    expected = looped._run_sdpa_forward_extend(query, torch.zeros_like(query), k_cache, v_cache, *args, **options)
    got = batched._run_sdpa_forward_extend(query, torch.zeros_like(query), k_cache, v_cache, *args, **options)
    assert batched.padded is not None  # the batched path ran, not the inherited loop
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_decode_matches_the_per_request_loop() -> None:
    batched, looped, req_to_token = backends()
    batch = forward_batch(ForwardMode.DECODE, [6, 1, 30, 11])
    batched.init_forward_metadata(batch)
    k_cache, v_cache, query = caches_and_query(4)
    args = (req_to_token, batch.req_pool_indices, batch.seq_lens)
    options = {"scaling": DIM**-0.5, "enable_gqa": True}
    expected = looped._run_sdpa_forward_decode(query, torch.zeros_like(query), k_cache, v_cache, *args, **options)
    got = batched._run_sdpa_forward_decode(query, torch.zeros_like(query), k_cache, v_cache, *args, **options)
    assert batched.padded is not None
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_deterministic_inference_keeps_the_per_request_loop() -> None:
    """A padded batch is not bit-for-bit batch-invariant; seeded sampling needs that, so the loop stays."""
    batched, _, _ = backends(deterministic=True)
    batched.init_forward_metadata(forward_batch(ForwardMode.DECODE, [6, 1, 30, 11]))
    assert batched.padded is None


def test_a_batch_that_would_be_mostly_padding_keeps_the_loop() -> None:
    """A 2048-token prefill chunk next to 255 decodes: padding every request to it would hold ~250x the pairs."""
    batched, _, _ = backends()
    seq_lens, extend_lens = [2048] + [300] * 255, [2048] + [1] * 255
    batched.init_forward_metadata(forward_batch(ForwardMode.MIXED, seq_lens, extend_lens))
    assert batched.padded is None
    assert not padding_dominates(torch.tensor([300] * 256), torch.ones(256, dtype=torch.long))  # decodes alike
