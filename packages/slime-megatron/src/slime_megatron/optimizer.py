"""The model wrapped for training (megatron-core DDP), its optimizer and its learning-rate schedule.

Megatron's DDP accumulates gradients into ``param.main_grad`` buffers, which only megatron's optimizer reads: a plain
torch optimizer over the same parameters would silently do nothing.
"""

import argparse
from dataclasses import dataclass

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.module import Float16Module


@dataclass
class Trainable:
    model: DistributedDataParallel
    optimizer: MegatronOptimizer
    scheduler: OptimizerParamScheduler


def wrap_model(model: torch.nn.Module, config: TransformerConfig, args: argparse.Namespace) -> DistributedDataParallel:
    """Float16Module (bf16: casts the model, returns fp32 logits) inside megatron DDP."""
    if config.bf16:
        model = Float16Module(config, model)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=False,
        use_distributed_optimizer=args.use_distributed_optimizer,
    )
    ddp = DistributedDataParallel(config=config, ddp_config=ddp_config, module=model)
    # The pipeline schedules call this after the last backward: DP all-reduce, tied-embedding all-reduce.
    config.finalize_model_grads_func = finalize_model_grads
    return ddp


def optimizer_config(args: argparse.Namespace, config: TransformerConfig) -> OptimizerConfig:
    return OptimizerConfig(
        optimizer="adam",
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2,
        adam_eps=args.adam_eps,
        clip_grad=args.clip_grad,
        bf16=config.bf16,
        params_dtype=config.params_dtype,
        use_distributed_optimizer=args.use_distributed_optimizer,
    )


def build_trainable(
    model: torch.nn.Module, config: TransformerConfig, args: argparse.Namespace, total_steps: int
) -> Trainable:
    """DDP, Adam and the warmup/decay schedule over ``total_steps`` optimizer steps (one per ``step(1)``)."""
    ddp = wrap_model(model, config, args)
    optimizer = get_megatron_optimizer(optimizer_config(args, config), [ddp])
    decay_steps = args.lr_decay_iters or total_steps
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=args.lr_warmup_init,
        max_lr=args.lr,
        min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_iters,
        lr_decay_steps=max(decay_steps, args.lr_warmup_iters + 1),
        lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay,
        end_wd=args.weight_decay,
        wd_incr_steps=max(total_steps, 1),
        wd_incr_style="constant",
    )
    return Trainable(ddp, optimizer, scheduler)
