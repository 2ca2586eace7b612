"""The megatron backend's flags (Megatron-LM's own, ``megatron_flags.py``) and their checks at parse time.

Checks here need no megatron import: flag values, the model shape against ``--hf-checkpoint``'s config.json, expert
parallelism against the expert count, and what the backend cannot train yet (multi-latent attention, experts split by
tensor parallelism). What depends on the device is checked by the training rank (``device_features.py``), because the
machine that parses may not be the one that trains.
"""

import argparse
from pathlib import Path

from slime.errors import ConfigError
from slime_megatron.megatron_flags import add_megatron_arguments
from slime_megatron.model_shape import check_and_fill_shape, load_hf_config
from slime_megatron.roles import ROLES, role_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("megatron train backend (slime-megatron)")
    group.add_argument(
        "--allgather-cp",
        action="store_true",
        help="slime's all-gather context-parallel layout for DSA attention models (not supported yet with CP > 1)",
    )
    # Flags of slime's Megatron-LM patch (GLM4's extra norms): the local layer spec builds them (post_norms.py);
    # checked against and filled from config.json like the shape flags (model_shape.py).
    group.add_argument("--post-self-attn-layernorm", action="store_true", help="a norm after self-attention (GLM4)")
    group.add_argument("--post-mlp-layernorm", action="store_true", help="a norm after the MLP (GLM4)")
    group.add_argument(
        "--megatron-config-path",
        default=None,
        help="slime's role YAML: a top-level 'megatron' list of entries tagged role: actor / role: critic whose "
        "'overrides' (argument names: lr, save, ...) apply to that role only (PPO's critic; roles.py)",
    )
    add_megatron_arguments(parser)


# slime's layer specs that this backend answers with its own local spec (slime_plugins/ in slime-megatron).
LOCAL_SPECS = (["slime_plugins.models.glm4", "get_glm_spec"],)


def _fail(message: str) -> None:
    raise ConfigError(message)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def validate_args(args: argparse.Namespace) -> None:
    for dest in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"):
        if getattr(args, dest) < 1:
            _fail(f"{_flag(dest)} must be >= 1, got {getattr(args, dest)}")
    for dest in ("lr", "min_lr", "weight_decay", "clip_grad", "lr_warmup_init"):
        if getattr(args, dest) < 0:
            _fail(f"{_flag(dest)} must be >= 0, got {getattr(args, dest)}")
    if args.min_lr > args.lr:
        _fail(f"--min-lr ({args.min_lr}) must be <= --lr ({args.lr})")
    if args.lr_warmup_iters < 0:
        _fail(f"--lr-warmup-iters must be >= 0, got {args.lr_warmup_iters}")
    if args.lr_warmup_fraction is not None and not 0 <= args.lr_warmup_fraction <= 1:
        _fail(f"--lr-warmup-fraction must be in [0, 1], got {args.lr_warmup_fraction}")
    if args.lr_decay_iters is not None and args.lr_decay_iters < 1:
        _fail(f"--lr-decay-iters must be >= 1, got {args.lr_decay_iters}")
    for dest in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, dest) < 1:
            _fail(f"{_flag(dest)} must be in [0, 1), got {getattr(args, dest)}")
    if args.spec is not None and len(args.spec) != 2:
        _fail(f"--spec takes MODULE FUNCTION (a custom layer spec), got {' '.join(args.spec) or 'nothing'}")
    if args.train_backend != "megatron":
        return
    if args.megatron_config_path:
        for role in ROLES:  # now, not when the role's rank starts
            role_overrides(args.megatron_config_path, role, args)
    _check_model(args)
    # Batch sizes against the data-parallel size are checked by the trainer, which knows its world.
    model_parallel = args.tensor_model_parallel_size * args.pipeline_model_parallel_size * args.context_parallel_size
    world_size = args.actor_num_nodes * args.actor_num_gpus_per_node
    if world_size % model_parallel:
        _fail(
            f"--actor-num-nodes x --actor-num-gpus-per-node ({world_size}) is not divisible by "
            f"--tensor-model-parallel-size x --pipeline-model-parallel-size x --context-parallel-size "
            f"({model_parallel})"
        )


def _check_model(args: argparse.Namespace) -> None:
    """The architecture: config.json's model type first (it names what is missing), then the flags."""
    if args.hf_checkpoint and (Path(args.hf_checkpoint) / "config.json").is_file():
        from slime.config.preflight import check_model_dir  # imports the data modules: only when needed

        check_model_dir(args.hf_checkpoint)  # slime's one-line errors for an unreadable config.json
        check_and_fill_shape(args, load_hf_config(args.hf_checkpoint), args.hf_checkpoint)
    _check_experts(args)
    if args.multi_latent_attention:
        _fail("--multi-latent-attention: model type multi-latent attention is not supported yet")
    local_spec = args.spec is None or args.spec in LOCAL_SPECS
    if args.transformer_impl != "local" and local_spec:
        _fail(
            f"--transformer-impl {args.transformer_impl}: this backend builds megatron-core's local layer spec; "
            "TransformerEngine layers are not supported yet"
        )
    if args.context_parallel_size > 1 and local_spec:
        _fail(
            f"--context-parallel-size {args.context_parallel_size}: megatron-core's local attention "
            "(DotProductAttention) does not support context parallelism; it needs TransformerEngine's attention"
        )
    if args.allgather_cp and args.context_parallel_size > 1:
        _fail("--allgather-cp is for DSA attention models (DeepSeek-V3.2, GLM-5.1), which are not supported yet")


def _check_experts(args: argparse.Namespace) -> None:
    """Expert parallelism against the expert count (filled in from config.json) and the world."""
    if args.use_routing_replay and args.num_experts is None:
        flag = "--use-rollout-routing-replay" if args.use_rollout_routing_replay else "--use-routing-replay"
        _fail(f"{flag} replays mixture-of-experts routing, and this model has no experts (--num-experts)")
    ep = args.expert_model_parallel_size
    if ep < 1:
        _fail(f"--expert-model-parallel-size must be >= 1, got {ep}")
    if args.expert_tensor_parallel_size not in (None, 1):
        _fail(
            f"--expert-tensor-parallel-size {args.expert_tensor_parallel_size}: experts split over tensor-parallel "
            "ranks are not supported yet (use 1: each expert whole on one rank)"
        )
    if ep == 1:
        return
    if args.num_experts is None:
        _fail(f"--expert-model-parallel-size {ep} needs a mixture-of-experts model (--num-experts)")
    if args.num_experts % ep:
        _fail(f"--expert-model-parallel-size {ep} does not divide the model's {args.num_experts} experts")
    world_size = args.actor_num_nodes * args.actor_num_gpus_per_node
    if world_size % (ep * args.pipeline_model_parallel_size):
        _fail(
            f"--expert-model-parallel-size {ep} x --pipeline-model-parallel-size "
            f"{args.pipeline_model_parallel_size} does not divide the {world_size} training ranks"
        )
