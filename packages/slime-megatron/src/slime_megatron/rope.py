"""megatron-core's unfused rotary embedding, with the cosine and sine of its frequencies taken once, not per call.

Without TransformerEngine's or Apex's fused RoPE (on CPU, or with ``apply_rope_fusion`` off), megatron-core 0.19
rotates queries and keys with ``rope_utils._apply_rotary_pos_emb_bshd``, which takes ``cos`` and ``sin`` of the
frequency tensor on every call (the query and the key of every layer, each forward) and then concatenates the rotated
part with an empty remainder, copying it. The frequency tensor is one object for all layers, and across steps of the
same length too (``RotaryEmbedding.forward`` is an ``lru_cache``). HF's models take cos and sin once per forward.

``install()`` swaps in a function with the same arithmetic (the same bits, values and gradients) that keeps the cos
and sin of the last frequency tensor it saw (checked by identity and in-place version, so a new or modified tensor is
recomputed) and skips the empty copy. Without interleaving it also keeps the sine with the first half negated, so
rotating half the dimensions is one ``torch.roll`` instead of a split, a negation and a concatenation (multiplying by
a negated number and negating the product round alike). MLA's interleaving keeps megatron's own function.
"""

import weakref

import torch
from megatron.core.models.common.embeddings import rope_utils

_megatron_bshd = rope_utils._apply_rotary_pos_emb_bshd


class _CosSin:
    """The cos and sine term of one frequency tensor at one scale, dtype and interleaving."""

    def __init__(self) -> None:
        self.freqs: weakref.ref | None = None
        self.key: tuple = ()
        self.cos = self.sin = torch.empty(0)

    def of(
        self, freqs: torch.Tensor, mscale: float, dtype: torch.dtype, interleaved: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (freqs._version, mscale, dtype, interleaved)
        if self.freqs is None or self.freqs() is not freqs or self.key != key:
            # The same expressions as megatron's, so the results are the same bits.
            self.cos = (torch.cos(freqs) * mscale).to(dtype)
            sin = (torch.sin(freqs) * mscale).to(dtype)
            if not interleaved:
                half = sin.shape[-1] // 2
                sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
            self.sin = sin
            self.freqs, self.key = weakref.ref(freqs), key
        return self.cos, self.sin


_last = _CosSin()


def _rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    if interleaved:
        return t * cos + rope_utils._rotate_half(t, True) * sin
    return t * cos + torch.roll(t, t.shape[-1] // 2, dims=-1) * sin  # sin's first half is negated


def _bshd_with_cached_cos_sin(
    t: torch.Tensor,
    freqs: torch.Tensor,
    rotary_interleaved: bool = False,
    mla_rotary_interleaved: bool = False,
    mscale: float = 1.0,
    multi_latent_attention: bool | None = None,
) -> torch.Tensor:
    if mla_rotary_interleaved or multi_latent_attention is not None:
        return _megatron_bshd(t, freqs, rotary_interleaved, mla_rotary_interleaved, mscale, multi_latent_attention)
    cos, sin = _last.of(freqs, mscale, t.dtype, rotary_interleaved)
    rot_dim = freqs.shape[-1]
    if rot_dim == t.shape[-1]:
        return _rotate(t, cos, sin, rotary_interleaved)
    return torch.cat((_rotate(t[..., :rot_dim], cos, sin, rotary_interleaved), t[..., rot_dim:]), dim=-1)


def install() -> None:
    """Use the cached cos/sin in megatron-core's unfused RoPE (idempotent)."""
    rope_utils._apply_rotary_pos_emb_bshd = _bshd_with_cached_cos_sin
