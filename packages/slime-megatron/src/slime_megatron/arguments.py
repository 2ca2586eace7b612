"""The megatron backend's flags, under Megatron-LM's names, and their checks."""

import argparse

from slime.errors import ConfigError

LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("megatron train backend (slime-megatron)")
    group.add_argument("--tensor-model-parallel-size", type=int, default=1)
    group.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    group.add_argument("--bf16", action="store_true", help="train in bf16 with fp32 main weights (GPU only)")
    group.add_argument("--use-distributed-optimizer", action="store_true", help="shard optimizer state over DP")
    group.add_argument("--lr", type=float, default=1e-6)
    group.add_argument("--min-lr", type=float, default=0.0)
    group.add_argument("--lr-decay-style", choices=LR_DECAY_STYLES, default="constant")
    group.add_argument("--lr-warmup-iters", type=int, default=0, help="optimizer steps of linear warmup")
    group.add_argument("--lr-warmup-init", type=float, default=0.0, help="learning rate at the start of warmup")
    group.add_argument("--lr-decay-iters", type=int, default=None, help="default: all optimizer steps of the run")
    group.add_argument("--weight-decay", type=float, default=0.01)
    group.add_argument("--adam-beta1", type=float, default=0.9)
    group.add_argument("--adam-beta2", type=float, default=0.999)
    group.add_argument("--adam-eps", type=float, default=1e-8)
    group.add_argument("--clip-grad", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    group.add_argument("--no-load-optim", action="store_true", help="with --load: weights only, fresh optimizer")
    group.add_argument("--no-load-rng", action="store_true", help="with --load: do not restore RNG states")


def _fail(message: str) -> None:
    raise ConfigError(message)


def validate_args(args: argparse.Namespace) -> None:
    for flag in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
        if getattr(args, flag) < 1:
            _fail(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("lr", "min_lr", "weight_decay", "clip_grad", "lr_warmup_init"):
        if getattr(args, flag) < 0:
            _fail(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.min_lr > args.lr:
        _fail(f"--min-lr ({args.min_lr}) must be <= --lr ({args.lr})")
    if args.lr_warmup_iters < 0:
        _fail(f"--lr-warmup-iters must be >= 0, got {args.lr_warmup_iters}")
    if args.lr_decay_iters is not None and args.lr_decay_iters < 1:
        _fail(f"--lr-decay-iters must be >= 1, got {args.lr_decay_iters}")
    for flag in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, flag) < 1:
            _fail(f"--{flag.replace('_', '-')} must be in [0, 1), got {getattr(args, flag)}")
    if args.train_backend != "megatron":
        return
    # Batch sizes against the data-parallel size are checked by the trainer, which knows its world.
    model_parallel = args.tensor_model_parallel_size * args.pipeline_model_parallel_size
    world_size = args.actor_num_nodes * args.actor_num_gpus_per_node
    if world_size % model_parallel:
        _fail(
            f"--actor-num-nodes x --actor-num-gpus-per-node ({world_size}) is not divisible by "
            f"--tensor-model-parallel-size x --pipeline-model-parallel-size ({model_parallel})"
        )
