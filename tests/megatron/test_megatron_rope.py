"""slime_megatron.rope: megatron-core's unfused RoPE with cos/sin taken once gives megatron's own results, bit for bit,
values and gradients, and recomputes them when the frequencies change."""

import pytest
import torch
from megatron.core.models.common.embeddings import rope_utils
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

from slime_megatron import rope


def _freqs(head_dim: int, rotary_percent: float, interleaved: bool, seq: int) -> torch.Tensor:
    embedding = RotaryEmbedding(head_dim, rotary_percent, rotary_interleaved=interleaved, rotary_base=10000)
    return embedding(seq)  # [seq, 1, 1, rotary dims]


@pytest.mark.parametrize("rotary_percent", [1.0, 0.5])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("mscale", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_bits_as_megatron_values_and_gradients(rotary_percent, interleaved, mscale, dtype):
    freqs = _freqs(16, rotary_percent, interleaved, seq=7)
    generator = torch.Generator().manual_seed(0)
    upstream = torch.randn(7, 3, 4, 16, generator=generator).to(dtype)
    results = {}
    for name, apply in (("megatron", rope._megatron_bshd), ("cached", rope._bshd_with_cached_cos_sin)):
        t = torch.randn(7, 3, 4, 16, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_()
        for _ in range(2):  # the second call reads the cache
            out = apply(t, freqs, rotary_interleaved=interleaved, mscale=mscale)
        (out * upstream).sum().backward()
        results[name] = (out.detach(), t.grad)
    assert torch.equal(results["cached"][0], results["megatron"][0])
    assert torch.equal(results["cached"][1], results["megatron"][1])


def test_cos_sin_are_taken_once_per_frequency_tensor_and_again_when_it_changes():
    freqs = _freqs(8, 1.0, False, seq=5)
    t = torch.randn(5, 2, 2, 8, generator=torch.Generator().manual_seed(2))
    rope._bshd_with_cached_cos_sin(t, freqs)
    cached = rope._last.cos
    rope._bshd_with_cached_cos_sin(t, freqs)
    assert rope._last.cos is cached

    freqs.mul_(2.0)  # modified in place: the cache must not serve the old values
    out = rope._bshd_with_cached_cos_sin(t, freqs)
    assert rope._last.cos is not cached
    assert torch.equal(out, rope._megatron_bshd(t, freqs))

    other = freqs.clone()  # another tensor with equal values is recomputed too
    rope._bshd_with_cached_cos_sin(t, other)
    assert rope._last.freqs() is other


def test_building_the_model_installs_it(world, tiny_models):
    from megatron_helpers import megatron_model

    megatron_model(tiny_models["qwen2"])
    assert rope_utils._apply_rotary_pos_emb_bshd is rope._bshd_with_cached_cos_sin
