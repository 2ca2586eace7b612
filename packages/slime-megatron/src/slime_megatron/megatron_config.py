"""Megatron-core's model, DDP and optimizer configs from the parsed flags, by Megatron-LM's own translation.

As Megatron-LM does for ``pretrain_gpt.py``: its ``validate_args`` derives what flags imply (params dtype, query
groups, sequence parallelism off at TP=1, ...), then ``core_transformer_config_from_args``,
``get_megatron_ddp_config`` and ``get_megatron_optimizer_config`` copy every flag whose name is a config field.
slime-megatron only adds what slime itself sets before Megatron validates (a placeholder sequence length, variable
sequence lengths) and what its model needs (the local layer spec has no fused kernels; weights always come from a
checkpoint). Import after ``cpu_compat.enable()`` on a machine without a GPU.
"""

import argparse
import contextlib
import copy
import io
from typing import Any

from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig
from megatron.core.transformer import TransformerConfig
from megatron.training.argument_utils import core_transformer_config_from_args
from megatron.training.arguments import add_megatron_arguments, validate_args
from megatron.training.training import get_megatron_ddp_config, get_megatron_optimizer_config

from slime_megatron.hf_config import HFModelConfig
from slime_megatron.megatron_flags import MEGATRON_TYPE, load_option_table
from slime_megatron.model_shape import check_and_fill_shape

# Fusions are CUDA kernels (or TransformerEngine's, for RoPE), none of which the local layer spec has on CPU;
# the unfused paths compute the same functions.
_FUSIONS_OFF = {
    "apply_rope_fusion": False,
    "bias_swiglu_fusion": False,
    "bias_gelu_fusion": False,
    "masked_softmax_fusion": False,
    "bias_dropout_fusion": False,
    "gradient_accumulation_fusion": False,
    "no_persist_layer_norm": True,
    "moe_permute_fusion": False,
    "moe_router_fusion": False,
    # The local layer spec builds SequentialMLP experts with or without it (megatron-core's LocalSpecProvider); on
    # CPU its only effect would be validate_args asking the GPU's compute capability.
    "moe_grouped_gemm": False,
}


def _megatron_typed_values(args: argparse.Namespace) -> dict[str, Any]:
    """Options kept as text while parsing, converted by Megatron's own type functions (its defaults where unset)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_megatron_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    values = {}
    for entry in load_option_table():
        if entry["type"] != MEGATRON_TYPE or not hasattr(args, entry["dest"]):
            continue
        action, text = actions[entry["dest"]], getattr(args, entry["dest"])
        if text == entry["default"]:
            values[entry["dest"]] = action.default
        elif isinstance(text, list):
            values[entry["dest"]] = [action.type(item) for item in text]
        else:
            values[entry["dest"]] = action.type(text)
    return values


def megatron_args(args: argparse.Namespace, hf: HFModelConfig, world_size: int, on_cpu: bool) -> argparse.Namespace:
    """A copy of ``args`` completed and checked by Megatron-LM's ``validate_args``."""
    # A deep copy: Megatron's validate_args appends to some of its list values in place.
    margs = argparse.Namespace(**copy.deepcopy(vars(args)))
    vars(margs).update(_megatron_typed_values(args))
    check_and_fill_shape(margs, hf, args.hf_checkpoint)
    if margs.max_position_embeddings is None:
        margs.max_position_embeddings = hf.max_position_embeddings
    if margs.seq_length is None:
        # A placeholder, as in slime: micro-batches carry their own lengths, Megatron only checks this number.
        margs.seq_length = margs.max_position_embeddings
    margs.rank, margs.world_size = 0, world_size
    # Checkpoints follow slime's rule (checkpoint.py), not Megatron's training loop, which validate_args checks for.
    margs.save = margs.load = None
    if margs.tokenizer_type is None:
        margs.tokenizer_type, margs.tokenizer_model = "HuggingFaceTokenizer", args.hf_checkpoint
    if margs.expert_tensor_parallel_size is None:
        margs.expert_tensor_parallel_size = 1  # each expert whole on one rank (hf_mapping); Megatron's default is TP
    if on_cpu:
        vars(margs).update(_FUSIONS_OFF)
    else:
        margs.apply_rope_fusion = False  # TransformerEngine's kernel; the local layer spec has none
    # validate_args prints every flag on rank 0 (a few hundred lines per layout); its errors are exceptions.
    with contextlib.redirect_stdout(io.StringIO()):
        validate_args(margs, {})
    # Micro-batches differ in length (and, by token budget, in samples): pipeline stages exchange shapes first.
    margs.variable_seq_lengths = margs.pipeline_model_parallel_size > 1
    # Only MoE reads the dispatcher; Megatron's default (allgather) refuses variable sequence lengths.
    margs.moe_token_dispatcher_type = "alltoall"
    # slime's --calculate-per-token-loss is slime's loss reduction (step-wide denominators, slime.rl.reduction);
    # Megatron's flag of the same name would make its schedules and DDP rescale the gradients a second time.
    margs.calculate_per_token_loss = False
    # Weights always come from a checkpoint (every parameter is mapped), so random initialisation is skipped; CPU
    # initialisation keeps a CPU run off Megatron's CUDA init path.
    margs.perform_initialization = False
    margs.use_cpu_initialization = on_cpu
    return margs


def transformer_config(margs: argparse.Namespace) -> TransformerConfig:
    return core_transformer_config_from_args(margs)


def ddp_config(margs: argparse.Namespace) -> DistributedDataParallelConfig:
    return get_megatron_ddp_config(margs)


def optimizer_config(margs: argparse.Namespace) -> tuple[OptimizerConfig, Any]:
    """Megatron's optimizer config and its per-parameter overrides (no weight decay on biases and norms)."""
    return get_megatron_optimizer_config(margs)
