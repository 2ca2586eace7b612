"""Core attention through torch's ``scaled_dot_product_attention`` for the local (TransformerEngine-free) layer spec.

megatron-core's local ``DotProductAttention`` is unfused: it materialises the ``[b, heads, s, s]`` scores with
``baddbmm``, masks and soft-maxes them, then multiplies by the values, with GQA keys and values copied out to every
query head. ``scaled_dot_product_attention`` computes the same function with one fused kernel (flash attention on
CPU and, for bf16/fp16, on GPU; the memory-efficient kernel for fp32 on GPU) and reads grouped keys and values in
place. In bf16 it is not bit-identical to megatron's path: it accumulates in fp32 where megatron rounds scores and
probabilities to bf16. The models slime maps use plain causal self-attention
with no mask tensor; every other case (sliding windows, softmax offsets, attention dropout, bias, packed sequences,
fp16 query-key layer scaling, decoding with a cache) keeps megatron's own path.
"""

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPAttention(DotProductAttention):
    """``DotProductAttention`` with ``[sq, b, heads, dim]`` in and ``[sq, b, heads * dim]`` out, computed by SDPA."""

    def _fused(self, query: torch.Tensor, key: torch.Tensor, attention_mask, attn_mask_type, extra) -> bool:
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        return (
            mask_type == AttnMaskType.causal
            and attention_mask is None
            and all(value is None for value in extra)
            and query.shape[0] == key.shape[0]  # SDPA's causal mask is top-left aligned: training only, no cache
            and self.scale_mask_softmax.window_size is None
            and self.softmax_offset is None
            and not self.config.apply_query_key_layer_scaling
            and not (self.training and self.attention_dropout.p > 0)
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        if not self._fused(query, key, attention_mask, attn_mask_type, (attention_bias, packed_seq_params)):
            return super().forward(query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params)
        # [s, b, heads, dim] -> [b, heads, s, dim]
        query, key, value = (tensor.permute(1, 2, 0, 3) for tensor in (query, key, value))
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            is_causal=True,
            scale=self.softmax_scale,
            enable_gqa=query.shape[1] != key.shape[1],
        )
        sq, batch = context.shape[2], context.shape[0]
        return context.permute(2, 0, 1, 3).reshape(sq, batch, self.hidden_size_per_partition)
