"""Forward FLOPs of a dense decoder (for ``perf/*_tflops`` and MFU): matmuls only, causal attention counted once."""

from collections.abc import Iterable

from slime_megatron.hf_config import HFModelConfig


def forward_flops(hf: HFModelConfig, seq_lengths: Iterable[int]) -> float:
    """FLOPs of one forward pass over sequences of these lengths (a backward pass costs about twice as much)."""
    q_dim, kv_dim = hf.num_heads * hf.head_dim, hf.num_kv_heads * hf.head_dim
    per_token_layer = 2 * hf.hidden_size * (q_dim + 2 * kv_dim)  # q, k, v projections
    per_token_layer += 2 * q_dim * hf.hidden_size  # output projection
    per_token_layer += 2 * 3 * hf.hidden_size * hf.intermediate_size  # SwiGLU: gate, up, down
    per_token_head = 2 * hf.hidden_size * hf.vocab_size
    total = 0.0
    for s in seq_lengths:
        # Scores and weighted values: 2 matmuls of 2 * s * s * q_dim FLOPs, halved by the causal mask.
        attention = 2 * s * s * q_dim
        total += hf.num_layers * (s * per_token_layer + attention) + s * per_token_head
    return total
