"""Megatron's model-shape flags against ``--hf-checkpoint``'s config.json.

slime's ``scripts/models/*.sh`` spell the architecture out in Megatron flags (``--num-layers 36 --swiglu ...``); the
weights come from the HF checkpoint. A shape flag a script gives must agree with config.json (a disagreement would
train a different model than the one loaded); one it leaves out is filled in from config.json, so a run needs no
shape flags at all.
"""

import argparse
import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slime.errors import ConfigError
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.megatron_flags import default_of

# A flag config.json does not decide for this model (Megatron's code ignores it): neither checked nor filled.
AS_GIVEN = object()

# (Megatron dest, its flag, the config.json field it mirrors, that field's value as Megatron states it)
SHAPE_FLAGS: list[tuple[str, str, str, Callable[[HFModelConfig], Any]]] = [
    ("num_layers", "--num-layers", "num_hidden_layers", lambda hf: hf.num_layers),
    ("hidden_size", "--hidden-size", "hidden_size", lambda hf: hf.hidden_size),
    ("ffn_hidden_size", "--ffn-hidden-size", "intermediate_size", lambda hf: hf.intermediate_size),
    ("num_attention_heads", "--num-attention-heads", "num_attention_heads", lambda hf: hf.num_heads),
    # Megatron spells "as many key/value heads as query heads" as no --group-query-attention.
    ("group_query_attention", "--group-query-attention", "num_key_value_heads", lambda hf: True),
    ("num_query_groups", "--num-query-groups", "num_key_value_heads", lambda hf: hf.num_kv_heads),
    ("kv_channels", "--kv-channels", "head_dim", lambda hf: hf.head_dim),
    ("swiglu", "--swiglu", "hidden_act", lambda hf: True),
    ("normalization", "--normalization", "rms_norm_eps", lambda hf: "RMSNorm"),
    ("layernorm_epsilon", "--norm-epsilon", "rms_norm_eps", lambda hf: hf.rms_norm_eps),
    ("add_bias_linear", "--disable-bias-linear", "mlp_bias", lambda hf: False),
    ("add_qkv_bias", "--add-qkv-bias", "attention_bias", lambda hf: hf.qkv_bias),
    ("qk_layernorm", "--qk-layernorm", "model_type (q/k norms)", lambda hf: hf.qk_norm),
    (
        "untie_embeddings_and_output_weights",
        "--untie-embeddings-and-output-weights",
        "tie_word_embeddings",
        lambda hf: not hf.tie_word_embeddings,
    ),
    ("position_embedding_type", "--position-embedding-type", "rope_theta", lambda hf: "rope"),
    ("rotary_percent", "--rotary-percent", "partial_rotary_factor", lambda hf: hf.partial_rotary_factor),
    ("rotary_interleaved", "--rotary-interleaved", "model_type", lambda hf: hf.glm),
    # slime's Megatron-LM patch's flags (GLM4's sandwich norms), built by the local layer spec (post_norms.py).
    ("post_self_attn_layernorm", "--post-self-attn-layernorm", "model_type", lambda hf: hf.glm),
    ("post_mlp_layernorm", "--post-mlp-layernorm", "model_type", lambda hf: hf.glm),
    ("rotary_base", "--rotary-base", "rope_theta", lambda hf: hf.rope_theta),
    ("vocab_size", "--vocab-size", "vocab_size", lambda hf: hf.vocab_size),
    ("num_experts", "--num-experts", "num_experts", lambda hf: hf.num_experts or None),
]

# Mixture-of-experts shape flags, checked for MoE models only (a dense model ignores them, as Megatron does).
MOE_SHAPE_FLAGS: list[tuple[str, str, str, Callable[[HFModelConfig], Any]]] = [
    ("moe_ffn_hidden_size", "--moe-ffn-hidden-size", "moe_intermediate_size", lambda hf: hf.moe_intermediate_size),
    ("moe_router_topk", "--moe-router-topk", "num_experts_per_tok", lambda hf: hf.moe_topk),
    (
        "moe_router_score_function",
        "--moe-router-score-function",
        "model_type (router)",
        lambda hf: hf.router_score_function,
    ),
    # Softmax over the top-k logits is the renormalised top-k of HF's softmax; pre-softmax keeps the raw top-k. A
    # sigmoid router ignores it (slime's GLM-4.5 scripts give it), so it is left as given there.
    (
        "moe_router_pre_softmax",
        "--moe-router-pre-softmax",
        "norm_topk_prob",
        lambda hf: not hf.norm_topk_prob if hf.router_score_function == "softmax" else AS_GIVEN,
    ),
    (
        "moe_shared_expert_intermediate_size",
        "--moe-shared-expert-intermediate-size",
        "n_shared_experts",
        lambda hf: hf.shared_expert_intermediate_size or None,
    ),
    (
        "moe_router_enable_expert_bias",
        "--moe-router-enable-expert-bias",
        "model_type (router bias)",
        lambda hf: hf.expert_bias,
    ),
    ("moe_router_num_groups", "--moe-router-num-groups", "n_group", lambda hf: hf.router_num_groups),
    ("moe_router_group_topk", "--moe-router-group-topk", "topk_group", lambda hf: hf.router_group_topk),
    (
        "moe_router_topk_scaling_factor",
        "--moe-router-topk-scaling-factor",
        "routed_scaling_factor",
        lambda hf: hf.router_scaling_factor,
    ),
]


def _same(given: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(given, float):
        return float(given) == float(expected)
    return given == expected


def load_hf_config(path: str | Path) -> HFModelConfig:
    """``HFModelConfig.load`` with its refusals as one-line ``ConfigError``s naming the flag."""
    try:
        return HFModelConfig.load(path)
    except ValueError as exc:
        raise ConfigError(f"--hf-checkpoint {path}: {exc}") from None


def _layer_pattern(value: Any, num_layers: int) -> list[int] | None:
    """``--moe-layer-freq`` as one 0/1 per layer: N (every N-th layer from the first) or a list; ``None`` for an
    expression Megatron evaluates on the training rank (``"([0]+[1]*47)"``), checked there once converted."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, int):
        return [int(i % value == 0) for i in range(num_layers)]
    return [int(v) for v in value] if isinstance(value, list | tuple) else None


# The config.json fields that say which layers are MoE, by model type (Qwen3-MoE's otherwise).
_LAYER_RULE = {"glm4_moe": "first_k_dense_replace makes"}


def _check_and_fill_layer_pattern(args: argparse.Namespace, hf: HFModelConfig, hf_path: str | Path) -> None:
    given = args.moe_layer_freq
    pattern = _layer_pattern(given, hf.num_layers)
    expected = list(hf.moe_layers)
    if given != default_of("moe_layer_freq") and pattern is not None and pattern != expected:
        raise ConfigError(
            f"--moe-layer-freq ({given}) disagrees with {Path(hf_path) / 'config.json'}: "
            f"{_LAYER_RULE.get(hf.model_type, 'decoder_sparse_step / mlp_only_layers make')} the MoE layers {expected}"
        )
    if not isinstance(given, str):  # text stays for Megatron's own conversion on the training rank
        args.moe_layer_freq = expected


def check_and_fill_shape(args: argparse.Namespace, hf: HFModelConfig, hf_path: str | Path) -> None:
    """Raise on a shape flag that disagrees with config.json; set every shape flag a script left out."""
    if args.use_rotary_position_embeddings:  # Megatron's older spelling of --position-embedding-type rope
        args.position_embedding_type = "rope"
    for dest, flag, hf_field, expected_of in SHAPE_FLAGS + (MOE_SHAPE_FLAGS if hf.num_experts else []):
        expected = expected_of(hf)
        if expected is AS_GIVEN:
            continue
        given = getattr(args, dest)
        if given != default_of(dest) and not _same(given, expected):
            if dest == "num_query_groups" and not args.group_query_attention:
                given = default_of(dest)  # Megatron ignores --num-query-groups without --group-query-attention
            else:
                shown = hf.raw.get(hf_field, expected)  # config.json's own value where the field is one
                raise ConfigError(
                    f"{flag} ({given}) disagrees with {Path(hf_path) / 'config.json'}: {hf_field} is {shown}"
                )
        setattr(args, dest, expected)
    if hf.num_experts:
        _check_and_fill_layer_pattern(args, hf, hf_path)
