"""GLM4's sandwich norms: an RMSNorm on the self-attention output and one on the MLP output, each before its residual
add (HF's ``Glm4DecoderLayer``: ``post_self_attn_layernorm``, ``post_mlp_layernorm``).

megatron-core 0.19.2's ``TransformerLayer`` has no such norms; slime's patched Megatron-LM adds them under these
parameter names (``decoder.layers.N.post_self_attn_layernorm.weight``), which this layer keeps. It applies each norm
inside the layer's bias-dropout-add, the one step where megatron-core hands over a sub-block's output before adding
the residual, so the rest of the layer's forward (recomputation, sequence parallelism) stays megatron-core's own.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

from slime_megatron.norms import TorchNorm


@dataclass
class PostNormLayerSubmodules(TransformerLayerSubmodules):
    post_self_attn_layernorm: type = IdentityOp
    post_mlp_layernorm: type = IdentityOp


def _norm_before_add(bias_dropout_add: Callable, norm: torch.nn.Module) -> Callable:
    """A bias-dropout-add factory (``factory(training, fused)(output_and_bias, residual, p)``) that normalises the
    sub-block's output (its bias added first) before the dropout and the residual add."""

    def factory(training: bool, fused: bool) -> Callable:
        add = bias_dropout_add(training, fused)

        def apply(output_and_bias: tuple[torch.Tensor, torch.Tensor | None], residual: torch.Tensor, prob: float):
            output, bias = output_and_bias
            if bias is not None:
                output = output + bias
            return add((norm(output), None), residual, prob)

        return apply

    return factory


class PostNormTransformerLayer(TransformerLayer):
    """megatron-core's ``TransformerLayer`` with a norm after self-attention and one after the MLP."""

    def __init__(self, config, submodules: PostNormLayerSubmodules, *args, **kwargs) -> None:
        super().__init__(config, submodules, *args, **kwargs)
        norm_args = {"config": config, "hidden_size": config.hidden_size, "eps": config.layernorm_epsilon}
        self.post_self_attn_layernorm = submodules.post_self_attn_layernorm(**norm_args)
        self.post_mlp_layernorm = submodules.post_mlp_layernorm(**norm_args)
        self.self_attn_bda = _norm_before_add(self.self_attn_bda, self.post_self_attn_layernorm)
        self.mlp_bda = _norm_before_add(self.mlp_bda, self.post_mlp_layernorm)


def with_post_norms(spec: ModuleSpec, after_attention: bool, after_mlp: bool) -> ModuleSpec:
    """A dense layer spec with the norms that ``--post-self-attn-layernorm`` / ``--post-mlp-layernorm`` ask for."""
    if spec.module is not TransformerLayer:
        raise ValueError(f"post-attention/post-MLP norms need a plain TransformerLayer spec, got {spec.module}")
    submodules = PostNormLayerSubmodules(
        **vars(spec.submodules),
        post_self_attn_layernorm=TorchNorm if after_attention else IdentityOp,
        post_mlp_layernorm=TorchNorm if after_mlp else IdentityOp,
    )
    return ModuleSpec(PostNormTransformerLayer, params=spec.params, submodules=submodules, metainfo=spec.metainfo)
