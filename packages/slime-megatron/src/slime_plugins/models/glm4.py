"""slime's import path for GLM4's layer spec, as slime's scripts/models/glm4-*.sh name it:
``--spec slime_plugins.models.glm4 get_glm_spec``.

slime-megatron ships ``slime_plugins.models`` (``slime_plugins`` itself is a namespace package, no ``__init__.py``)
because it imports megatron-core, which slime-core must not.
"""

import argparse

from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

from slime_megatron.model import local_block_spec


def get_glm_spec(
    args: argparse.Namespace, config: TransformerConfig, vp_stage: int | None
) -> TransformerBlockSubmodules:
    """slime's signature; the backend's local spec, which builds GLM4's post-attention and post-MLP norms from
    ``--post-self-attn-layernorm`` / ``--post-mlp-layernorm`` (filled in from a GLM4 config.json when not given)."""
    return local_block_spec(args, config)
