"""The model wrapped for training (megatron-core DDP), its optimizer and its learning-rate schedule.

The DDP and optimizer configs are Megatron-LM's translation of the flags (``megatron_config.py``). Megatron's DDP
accumulates gradients into ``param.main_grad`` buffers, which only megatron's optimizer reads: a plain torch optimizer
over the same parameters would silently do nothing.
"""

import argparse
from dataclasses import dataclass

import torch
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.optimizer import MegatronOptimizer, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.module import Float16Module

from slime_megatron.megatron_config import ddp_config, optimizer_config


@dataclass
class Trainable:
    model: DistributedDataParallel
    optimizer: MegatronOptimizer
    scheduler: OptimizerParamScheduler


def wrap_model(model: torch.nn.Module, config: TransformerConfig, margs: argparse.Namespace) -> DistributedDataParallel:
    """Float16Module (bf16: casts the model, returns fp32 logits) inside megatron DDP."""
    if config.bf16:
        model = Float16Module(config, model)
    ddp = DistributedDataParallel(config=config, ddp_config=ddp_config(margs), module=model)
    # The pipeline schedules call this after the last backward: DP all-reduce, tied-embedding all-reduce.
    config.finalize_model_grads_func = finalize_model_grads
    return ddp


def build_trainable(
    model: torch.nn.Module, config: TransformerConfig, margs: argparse.Namespace, total_steps: int
) -> Trainable:
    """DDP, the optimizer (``--optimizer``) and the warmup/decay schedule over ``total_steps`` optimizer steps."""
    ddp = wrap_model(model, config, margs)
    opt_config, overrides = optimizer_config(margs)
    optimizer = get_megatron_optimizer(opt_config, [ddp], config_overrides=overrides)
    decay_steps = margs.lr_decay_iters or total_steps
    warmup_steps = margs.lr_warmup_iters
    if margs.lr_warmup_fraction is not None:
        warmup_steps = int(margs.lr_warmup_fraction * decay_steps)
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=margs.lr_warmup_init,
        max_lr=margs.lr,
        min_lr=margs.min_lr,
        lr_warmup_steps=warmup_steps,
        lr_decay_steps=max(decay_steps, warmup_steps + 1),
        lr_decay_style=margs.lr_decay_style,
        start_wd=margs.weight_decay,
        end_wd=margs.weight_decay,
        wd_incr_steps=max(total_steps, 1),
        wd_incr_style="constant",
    )
    return Trainable(ddp, optimizer, scheduler)
