"""PyTorch's LayerNorm / RMSNorm for megatron-core's local layer spec, also under sequence parallelism.

Without Apex or TransformerEngine, megatron-core's local spec builds its norms with ``WrappedTorchNorm``, which
refuses ``--sequence-parallel``. Sequence parallelism only needs the norm to be marked: each tensor-parallel rank then
normalises its own slice of the tokens, so its weight gradient is partial, and megatron-core's
``finalize_model_grads`` sums the gradients of parameters marked ``sequence_parallel`` over the TP group (what Apex's
and TransformerEngine's norms mark too). Same modules, same numbers as ``WrappedTorchNorm`` otherwise.
"""

import torch
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.torch_norm import WrappedTorchNorm

_NORMS = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}


class TorchNorm:
    """Builds ``torch.nn.LayerNorm`` or ``RMSNorm`` (``config.normalization``), marked for sequence parallelism."""

    def __new__(cls, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_unused) -> torch.nn.Module:
        if config.normalization not in _NORMS:
            raise ValueError(f"--normalization {config.normalization} is not supported by the local layer spec")
        norm = _NORMS[config.normalization](hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm


def replace_torch_norms(spec: object) -> None:
    """Swap ``WrappedTorchNorm`` for ``TorchNorm`` everywhere in a layer spec's submodules (in place)."""
    submodules = getattr(spec, "submodules", None)
    if submodules is None:
        return
    for name, value in vars(submodules).items():
        if value is WrappedTorchNorm:
            setattr(submodules, name, TorchNorm)
        else:
            replace_torch_norms(value)
