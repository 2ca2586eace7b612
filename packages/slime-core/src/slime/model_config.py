"""What slime-core reads of an HF model config (a ``config.json`` dict or a transformers config object): the facts
both the FLOPs count here and a backend's model builder need, so that each is written once."""

from collections.abc import Mapping
from typing import Any


def config_value(config: Mapping[str, Any] | Any, *names: str) -> Any:
    """The first of ``names`` the config sets (HF spells some fields differently per family or version)."""
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if value is not None:
            return value
    return None


def num_experts(config: Mapping[str, Any] | Any) -> int:
    """Routed experts per MoE layer; 0 for a dense model. transformers 5 writes Qwen3-MoE's count as
    ``num_local_experts``; Qwen's own checkpoints say ``num_experts``, GLM-4.5's ``n_routed_experts``."""
    return int(config_value(config, "num_experts", "num_local_experts", "n_routed_experts") or 0)


def shared_expert_size(config: Mapping[str, Any] | Any) -> int:
    """The intermediate size of an MoE layer's shared expert (which every token goes through); 0 without one.
    Qwen2-MoE states it; GLM-4.5 (like DeepSeek-V3) counts shared experts of the routed experts' size."""
    size = config_value(config, "shared_expert_intermediate_size")
    if size is None:
        size = (config_value(config, "n_shared_experts") or 0) * (config_value(config, "moe_intermediate_size") or 0)
    return int(size)


def moe_layer_pattern(config: Mapping[str, Any] | Any) -> list[int]:
    """Per layer, 1 where the MLP is the experts and 0 where it is a dense MLP (GLM-4.5's rule: dense for the first
    ``first_k_dense_replace`` layers; Qwen3-MoE's: sparse every ``decoder_sparse_step``-th layer unless listed in
    ``mlp_only_layers``); all 0 for a dense model."""
    num_layers = int(config_value(config, "num_hidden_layers"))
    if not num_experts(config):
        return [0] * num_layers
    first_sparse = config_value(config, "first_k_dense_replace")
    if first_sparse is not None:
        return [int(i >= first_sparse) for i in range(num_layers)]
    step = config_value(config, "decoder_sparse_step") or 1
    dense = set(config_value(config, "mlp_only_layers") or ())
    return [int(i not in dense and (i + 1) % step == 0) for i in range(num_layers)]
