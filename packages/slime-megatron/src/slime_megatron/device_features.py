"""Megatron features that need a GPU: they parse everywhere, go to Megatron as given on a GPU, and are refused on CPU.

Checked by the training rank (the machine that parses a script may not be the one that trains it).
"""

import argparse
import importlib.util
from collections.abc import Callable

from slime.errors import ConfigError

# (flag as the user typed it, when it is on, why it cannot run on CPU)
GPU_ONLY: list[tuple[str, Callable[[argparse.Namespace], bool], str]] = [
    ("--optimizer-cpu-offload", lambda a: a.optimizer_cpu_offload, "it offloads a GPU optimizer's state to the CPU"),
    (
        "--overlap-cpu-optimizer-d2h-h2d",
        lambda a: a.overlap_cpu_optimizer_d2h_h2d,
        "it overlaps GPU<->CPU copies of the offloaded optimizer",
    ),
    (
        "--use-precision-aware-optimizer",
        lambda a: a.use_precision_aware_optimizer,
        "it needs TransformerEngine's fused Adam",
    ),
    ("--fp8-format", lambda a: a.fp8 is not None, "fp8 training needs TransformerEngine on a GPU"),
    ("--fp8-param-gather", lambda a: a.fp8_param_gather, "fp8 training needs TransformerEngine on a GPU"),
    ("--fp4-format", lambda a: a.fp4 is not None, "fp4 training needs TransformerEngine on a GPU"),
    (
        "--attention-backend",
        lambda a: a.attention_backend in ("flash", "fused"),
        "flash and fused attention are CUDA kernels; on CPU use auto, local or unfused",
    ),
    ("--use-flash-attn", lambda a: a.use_flash_attn, "flash attention is a CUDA kernel"),
    ("--tp-comm-overlap", lambda a: a.tp_comm_overlap, "it overlaps TransformerEngine's GPU communication"),
    ("--moe-enable-deepep", lambda a: a.moe_enable_deepep, "DeepEP is a CUDA all-to-all library"),
]


def refuse_gpu_only_features(args: argparse.Namespace) -> None:
    """One line naming the first GPU-only flag that is on."""
    for flag, is_on, why in GPU_ONLY:
        if is_on(args):
            value = getattr(args, flag[2:].replace("-", "_"), None)
            shown = f"{flag} {value}" if isinstance(value, str) else flag
            raise ConfigError(f"{shown} needs a GPU ({why}); this rank trains on CPU")


def refuse_missing_gpu_kernels(args: argparse.Namespace) -> None:
    """On a GPU rank: one line for a Megatron default that needs a kernel this machine lacks, instead of megatron-core's
    traceback while the model is built. Gradient accumulation fusion (on by Megatron's default) needs Apex's
    ``fused_weight_gradient_mlp_cuda`` (seen on a GPU machine without Apex)."""
    if args.gradient_accumulation_fusion and importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is None:
        raise ConfigError(
            "--gradient-accumulation-fusion (on by Megatron's default) needs Apex's fused_weight_gradient_mlp_cuda "
            "kernel, which this rank lacks; pass --no-gradient-accumulation-fusion"
        )
