"""What slime reads of an HF causal-LM ``config.json`` (Qwen2, Qwen3, Qwen3-MoE, Llama, GLM4), checked once.

Read from the JSON directly (no transformers import, no megatron-core import): the fields these families share are
few, and reading them here makes every unsupported option a clear error instead of a silently different model.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slime.model_config import moe_layer_pattern, num_experts

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "qwen3_moe", "llama", "glm4")

# Megatron pads the vocabulary so every tensor-parallel rank holds an equal, aligned slice of it (Megatron-LM's
# --make-vocab-size-divisible-by default). Padding rows never reach a log-prob: logits are cut to the real vocabulary.
VOCAB_DIVISOR = 128


# The config.json fields the model's shape is built from, with no default to fall back on.
REQUIRED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@dataclass(frozen=True)
class HFModelConfig:
    """What slime needs of an HF config.json, checked once."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool  # Qwen2: q/k/v projections have biases
    qk_norm: bool  # Qwen3: RMSNorm over each head of q and k
    # GLM4: RMSNorms on the attention and MLP outputs before each residual add, rotary embedding interleaved (pairs
    # of adjacent dimensions) over the first partial_rotary_factor of each head, gate and up projections fused on disk.
    glm: bool = False
    partial_rotary_factor: float = 1.0
    # Mixture-of-experts (Qwen3-MoE); num_experts 0 for a dense model.
    num_experts: int = 0
    moe_topk: int = 0
    moe_intermediate_size: int = 0
    # True: the top-k routing weights are renormalised to sum to 1 (softmax over the chosen experts' logits).
    norm_topk_prob: bool = False
    # Per layer: 1 where the MLP is the experts, 0 where it is a dense MLP (decoder_sparse_step, mlp_only_layers).
    moe_layers: tuple[int, ...] = ()
    # The config.json as read, under HF's names, for slime-core's helpers that take an HF config (the FLOPs count).
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "HFModelConfig":
        model_type = config.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model type {model_type} is not supported yet (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        missing = [name for name in REQUIRED_FIELDS if name not in config]
        if missing:
            raise ValueError(f"config.json has no {', '.join(missing)} (the model's shape needs it)")
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (SwiGLU needs silu)")
        if config.get("mlp_bias"):
            raise ValueError("mlp_bias=true is not supported")
        if model_type == "llama" and config.get("attention_bias"):
            raise ValueError("llama with attention_bias=true (an o_proj bias) is not supported")
        if config.get("use_sliding_window"):
            raise ValueError("use_sliding_window=true is not supported")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"rope_type {rope_type!r} is not supported (only 'default' RoPE)")
        rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        glm = model_type == "glm4"
        # Glm4Config's own default is 0.5; the other families rotate whole heads.
        partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 0.5 if glm else 1.0))
        if not glm and partial != 1.0:
            raise ValueError(f"partial_rotary_factor {partial} is not supported for {model_type} (only 1.0)")
        num_heads = config["num_attention_heads"]
        num_layers = config["num_hidden_layers"]
        experts = num_experts(config) if model_type == "qwen3_moe" else 0
        moe_layers = tuple(moe_layer_pattern(config)) if experts else ()
        return cls(
            model_type=model_type,
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=config.get("num_key_value_heads") or num_heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // num_heads,
            rms_norm_eps=config.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            max_position_embeddings=config.get("max_position_embeddings", 4096),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", glm)),  # Glm4Config: True
            qk_norm=model_type in ("qwen3", "qwen3_moe"),
            glm=glm,
            partial_rotary_factor=float(partial),
            num_experts=experts,
            moe_topk=config.get("num_experts_per_tok", 0) if experts else 0,
            moe_intermediate_size=config.get("moe_intermediate_size", 0) if experts else 0,
            norm_topk_prob=bool(config.get("norm_topk_prob", False)) if experts else False,
            moe_layers=moe_layers,
            raw=config,
        )

    @classmethod
    def load(cls, hf_dir: str | Path) -> "HFModelConfig":
        return cls.from_dict(json.loads((Path(hf_dir) / "config.json").read_text()))

    def padded_vocab_size(self, tp_size: int) -> int:
        multiple = VOCAB_DIVISOR * tp_size
        return math.ceil(self.vocab_size / multiple) * multiple
