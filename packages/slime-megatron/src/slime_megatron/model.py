"""The megatron-core ``GPTModel`` of an HF causal-LM checkpoint (Qwen2, Qwen3, Qwen3-MoE, Llama, GLM4), configured by
the flags.

Megatron-LM's translation turns the flags into the ``TransformerConfig`` (``megatron_config.py``); the layer spec is
megatron-core's local one with slime-megatron's SDPA core attention (and GLM4's post-attention and post-MLP norms when
their flags are on), or ``--spec MODULE FUNCTION``'s.
"""

import argparse
import importlib

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

from slime.errors import ConfigError
from slime_megatron.attention import SDPAttention
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.megatron_config import megatron_args, transformer_config
from slime_megatron.norms import TorchNorm, replace_torch_norms
from slime_megatron.post_norms import with_post_norms
from slime_megatron.rope import install as install_cached_rope


def _local_layer_spec(margs: argparse.Namespace, num_experts: int | None) -> ModuleSpec:
    """megatron-core's local layer spec (experts: a ``SequentialMLP`` of per-expert MLPs) with SDPA attention and
    torch norms that allow sequence parallelism."""
    spec = get_gpt_layer_local_spec(
        num_experts=num_experts, qk_layernorm=margs.qk_layernorm, normalization=margs.normalization
    )
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    replace_torch_norms(spec)
    if margs.post_self_attn_layernorm or margs.post_mlp_layernorm:
        spec = with_post_norms(spec, margs.post_self_attn_layernorm, margs.post_mlp_layernorm)
    return spec


def local_block_spec(margs: argparse.Namespace, config: TransformerConfig) -> TransformerBlockSubmodules:
    """The local spec of every layer this rank builds, with SDPA attention and torch norms that allow sequence
    parallelism (``norms.py``), final norm included."""
    dense = _local_layer_spec(margs, num_experts=None)
    if not config.num_moe_experts:
        layers = [dense] * get_num_layers_to_build(config)
    else:
        # One spec per layer: MoE where --moe-layer-freq says so (a 0/1 list per layer, checked against and
        # filled from config.json by model_shape.py), a dense MLP elsewhere.
        moe = _local_layer_spec(margs, num_experts=config.num_moe_experts)
        offset = get_transformer_layer_offset(config)
        layers = [moe if config.moe_layer_freq[offset + i] else dense for i in range(get_num_layers_to_build(config))]
    return TransformerBlockSubmodules(layer_specs=layers, layer_norm=TorchNorm)


def layer_spec(margs: argparse.Namespace, config: TransformerConfig) -> ModuleSpec | TransformerBlockSubmodules:
    """``--spec MODULE FUNCTION`` (called as slime calls it: ``function(args, config, vp_stage)``), else the local
    block spec."""
    if margs.spec is None:
        return local_block_spec(margs, config)
    module_name, name = margs.spec
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--spec {module_name} {name}: cannot import it ({exc})") from None
    return found(margs, config, None) if callable(found) else found


class ValueHead(torch.nn.Linear):
    """PPO's critic output layer: one value per position (slime's ``LinearForLastLayer``), in place of the logits.

    Replicated on every tensor-parallel rank. Under sequence parallelism each rank sees its slice of the sequence:
    the values are gathered, and the weights are marked so that megatron sums their gradients over the ranks. Its
    initial weights come from a generator of their own (``seed``), so every rank and every layout starts the same.
    """

    def __init__(self, config: TransformerConfig, seed: int) -> None:
        super().__init__(config.hidden_size, 1, bias=True)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=generator) * config.init_method_std)
            self.bias.zero_()
        self.sequence_parallel = config.sequence_parallel
        for param in (self.weight, self.bias):
            param.sequence_parallel = config.sequence_parallel

    def forward(
        self, hidden: torch.Tensor, weight: torch.Tensor | None = None, runtime_gather_output: bool | None = None
    ) -> tuple[torch.Tensor, None]:
        values = super().forward(hidden).float()
        if self.sequence_parallel:
            values = tensor_parallel.gather_from_sequence_parallel_region(values, tensor_parallel_output_grad=False)
        return values, None


def build_model(
    args: argparse.Namespace, hf: HFModelConfig, world_size: int, on_cpu: bool, value_head: bool = False
) -> tuple[argparse.Namespace, TransformerConfig, GPTModel]:
    """Megatron's view of the flags, the model config, and this rank's pipeline stage of the model
    (``parallel_state`` must be initialised); with ``value_head``, PPO's critic: a ``ValueHead`` on the last stage
    in place of the language-model head."""
    margs = megatron_args(args, hf, world_size, on_cpu)
    config = transformer_config(margs)
    install_cached_rope()
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(margs, config),
        vocab_size=hf.padded_vocab_size(config.tensor_model_parallel_size),
        max_sequence_length=margs.max_position_embeddings,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        # Each TP rank keeps its slice of the vocabulary; log-probs are assembled across slices (logprobs.py).
        parallel_output=True,
        share_embeddings_and_output_weights=not (margs.untie_embeddings_and_output_weights or value_head),
        position_embedding_type=margs.position_embedding_type,
        rotary_percent=margs.rotary_percent,
        rotary_base=margs.rotary_base,
    )
    if value_head and model.post_process:
        model.output_layer = ValueHead(config, margs.seed)
    if not on_cpu:
        model.cuda()
    return margs, config, model


def unwrap_model(model: torch.nn.Module) -> GPTModel:
    """The ``GPTModel`` inside megatron's DDP and Float16Module wrappers."""
    while not isinstance(model, GPTModel):
        model = model.module
    return model
