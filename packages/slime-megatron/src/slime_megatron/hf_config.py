"""What slime reads of an HF causal-LM ``config.json`` (Qwen2, Qwen3, Qwen3-MoE, Llama, GLM4, GLM-4.5), checked once.

Read from the JSON directly (no transformers import, no megatron-core import): the fields these families share are
few, and reading them here makes every unsupported option a clear error instead of a silently different model.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slime.model_config import config_value, moe_layer_pattern, num_experts, shared_expert_size

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "qwen3_moe", "llama", "glm4", "glm4_moe")
MOE_MODEL_TYPES = ("qwen3_moe", "glm4_moe")

# Megatron pads the vocabulary so every tensor-parallel rank holds an equal, aligned slice of it (Megatron-LM's
# --make-vocab-size-divisible-by default). Padding rows never reach a log-prob: logits are cut to the real vocabulary.
VOCAB_DIVISOR = 128


# The config.json fields the model's shape is built from, with no default to fall back on.
REQUIRED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _glm4_moe_router(config: dict[str, Any]) -> dict[str, Any]:
    """GLM-4.5's router fields, refusing what megatron-core's sigmoid router cannot compute as HF does."""
    topk = config.get("num_experts_per_tok", 8)
    groups, group_topk = config_value(config, "n_group") or 1, config_value(config, "topk_group") or 1
    # megatron-core renormalises sigmoid scores whenever it picks more than one expert, and never for one.
    if not config.get("norm_topk_prob", True) or topk < 2:
        raise ValueError(
            f"glm4_moe with norm_topk_prob={config.get('norm_topk_prob', True)} and num_experts_per_tok {topk} is not "
            "supported (megatron-core's sigmoid router renormalises exactly when it picks 2 or more experts)"
        )
    # HF scores a group by its best 2 experts; megatron-core by its best topk // group_topk.
    if groups > 1 and topk // group_topk != 2:
        raise ValueError(
            f"glm4_moe with n_group {groups}, topk_group {group_topk} and num_experts_per_tok {topk} is not supported "
            "(megatron-core scores a group by its best num_experts_per_tok // topk_group experts, HF by its best 2)"
        )
    return {
        "router_score_function": "sigmoid",
        "expert_bias": True,  # e_score_correction_bias: every Glm4MoeTopkRouter has one
        "router_num_groups": groups,
        "router_group_topk": group_topk,
        "router_scaling_factor": float(config.get("routed_scaling_factor", 1.0)),
    }


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
    qk_norm: bool  # Qwen3 (and GLM-4.5's use_qk_norm): RMSNorm over each head of q and k
    # GLM4: RMSNorms on the attention and MLP outputs before each residual add, rotary embedding interleaved (pairs
    # of adjacent dimensions) over the first partial_rotary_factor of each head, gate and up projections fused on disk.
    glm: bool = False
    partial_rotary_factor: float = 1.0
    # Mixture-of-experts (Qwen3-MoE, GLM-4.5); num_experts 0 for a dense model.
    num_experts: int = 0
    moe_topk: int = 0
    moe_intermediate_size: int = 0
    # True: the top-k routing weights are renormalised to sum to 1 (softmax over the chosen experts' logits).
    norm_topk_prob: bool = False
    # GLM-4.5's router: a shared expert every token goes through (0: none), sigmoid scores whose top-k is chosen
    # after adding a per-expert bias (e_score_correction_bias), among the best router_group_topk of router_num_groups
    # expert groups, the chosen scores renormalised and multiplied by router_scaling_factor.
    shared_expert_intermediate_size: int = 0
    router_score_function: str = "softmax"
    expert_bias: bool = False
    router_num_groups: int | None = None
    router_group_topk: int | None = None
    router_scaling_factor: float | None = None
    # Per layer: 1 where the MLP is the experts, 0 where it is a dense MLP (decoder_sparse_step, mlp_only_layers;
    # first_k_dense_replace).
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
        # Glm4Config's and Glm4MoeConfig's own default is 0.5; the other families rotate whole heads.
        half_rotary = model_type in ("glm4", "glm4_moe")
        partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 0.5 if half_rotary else 1.0))
        if not half_rotary and partial != 1.0:
            raise ValueError(f"partial_rotary_factor {partial} is not supported for {model_type} (only 1.0)")
        num_heads = config["num_attention_heads"]
        num_layers = config["num_hidden_layers"]
        experts = num_experts(config) if model_type in MOE_MODEL_TYPES else 0
        moe_layers = tuple(moe_layer_pattern(config)) if experts else ()
        router = _glm4_moe_router(config) if experts and model_type == "glm4_moe" else {}
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
            qk_norm=model_type in ("qwen3", "qwen3_moe")
            or bool(model_type == "glm4_moe" and config.get("use_qk_norm")),
            glm=glm,
            partial_rotary_factor=float(partial),
            num_experts=experts,
            moe_topk=config.get("num_experts_per_tok", 0) if experts else 0,
            moe_intermediate_size=config.get("moe_intermediate_size", 0) if experts else 0,
            norm_topk_prob=bool(config.get("norm_topk_prob", False)) if experts else False,
            moe_layers=moe_layers,
            shared_expert_intermediate_size=shared_expert_size(config) if experts else 0,
            raw=config,
            **router,
        )

    @classmethod
    def load(cls, hf_dir: str | Path) -> "HFModelConfig":
        return cls.from_dict(json.loads((Path(hf_dir) / "config.json").read_text()))

    def padded_vocab_size(self, tp_size: int) -> int:
        multiple = VOCAB_DIVISOR * tp_size
        return math.ceil(self.vocab_size / multiple) * multiple
