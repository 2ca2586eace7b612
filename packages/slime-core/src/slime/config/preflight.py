"""Checks of a run's inputs before anything starts: the model directory, the prompt and eval data, and every plugin
the flags name.

``slime train`` and ``slime eval`` call ``check_run_inputs`` after parsing flags and before Ray starts, so a bad file
or name ends in one line (``SlimeError``) before engines load or anything is written to ``--output-dir``. The same
functions load the data again inside the run; reading it twice costs seconds, a mistake found after engines start
costs minutes (and leaves a half-written output directory behind).
"""

import argparse
import json
from pathlib import Path

from slime.data.data_source import RolloutDataSource, load_train_prompts
from slime.errors import ConfigError, DataError
from slime.eval.datasets import eval_dataset_configs, eval_prompts
from slime.plugins import load_object, resolve
from slime.rl.advantages import uses_critic
from slime.rl.losses import resolve_loss
from slime.rollout.dumps import load_rollout_dump
from slime.rollout.reward import resolve_reward_function
from slime.types import Sample


def check_run_inputs(args: argparse.Namespace, train: bool = True) -> None:
    """Raise a one-line ``SlimeError`` for the first bad input of a ``slime train`` (or, ``train=False``, eval) run."""
    check_model_dir(args.hf_checkpoint)
    if args.opd_teacher_load is not None and not Path(args.opd_teacher_load).expanduser().is_dir():
        raise ConfigError(f"--opd-teacher-load {args.opd_teacher_load}: no such directory (the teacher's checkpoint)")
    if not train and (args.debug_rollout_only or args.debug_train_only):
        flag = "--debug-train-only (or --load-debug-rollout-data)"
        if args.debug_rollout_only:
            flag = "--debug-rollout-only"
        raise ConfigError(f"{flag} is for slime train; slime eval only evaluates")
    if train:
        if args.rollout_batch_size is None:
            raise ConfigError("slime train needs --rollout-batch-size (prompts per rollout)")
        backend = resolve("train_backends", args.train_backend)
        if uses_critic(args) and not hasattr(backend, "train_critic"):
            raise ConfigError(
                f"--advantage-estimator ppo needs a critic (a value model), which the train backend "
                f"'{args.train_backend}' cannot train; use --train-backend megatron"
            )
    resolve("rollout_backends", args.rollout_backend)
    resolve("rollout_functions", args.rollout_function_path)
    resolve("rollout_functions", args.eval_function_path, "--eval-function-path")
    if args.rm_type or args.custom_rm_path:
        resolve_reward_function(args)
    _check_custom_functions(args)
    if train:
        resolve_loss(args)  # a loss in neither slime's form nor ours ends here, not at the first train step
        _check_train_data(args)
        for flag in ("--save-debug-rollout-data", "--load-debug-rollout-data"):
            _check_rollout_path_template(flag, getattr(args, flag[2:].replace("-", "_")))
        if args.load_debug_rollout_data and (args.start_rollout_id is not None or not args.load):
            first = args.start_rollout_id or 0  # after --load, the checkpoint says which rollout comes first
            load_rollout_dump(args.load_debug_rollout_data.format(rollout_id=first), first)
    for config in eval_dataset_configs(args):
        eval_prompts(args, config)
        if config.custom_rm_path or config.rm_type:
            metadata = {"rm_type": config.rm_type} if config.rm_type else {}
            resolve_reward_function(args, Sample(custom_rm_path=config.custom_rm_path, metadata=metadata))


# slime's dotted-path hooks that only ever name an importable function.
_FUNCTION_FLAGS = (
    "--rollout-sample-filter-path",
    "--rollout-all-samples-process-path",
    "--custom-convert-samples-to-train-data-path",
    "--rollout-data-postprocess-path",
    "--custom-loss-function-path",
    "--custom-pg-loss-reducer-function-path",
    "--custom-rollout-log-function-path",
    "--custom-eval-rollout-log-function-path",
)


def _check_custom_functions(args: argparse.Namespace) -> None:
    for flag in _FUNCTION_FLAGS:
        path = getattr(args, flag[2:].replace("-", "_"))
        if path:
            load_object(path, flag)
    if args.custom_generate_function_path:
        resolve("generate_functions", args.custom_generate_function_path, "--custom-generate-function-path")
    for path in args.rollout_sample_hook_path or []:
        resolve("generate_functions", path, "--rollout-sample-hook-path")


def check_model_dir(path: str | None) -> None:
    """``--hf-checkpoint``, when it is a local path, must be an HF model directory (one with a readable config.json).

    A name that is not a path on this machine may be a hub id; whoever loads it reports what is wrong with it.
    """
    if path is None:
        return
    directory = Path(path).expanduser()
    if not directory.exists():
        if path.startswith(("/", ".", "~")):
            raise ConfigError(f"--hf-checkpoint {path}: no such directory")
        return
    if not directory.is_dir():
        raise ConfigError(f"--hf-checkpoint {path}: not a directory (expected a Hugging Face model directory)")
    config = directory / "config.json"
    if not config.is_file():
        raise ConfigError(f"--hf-checkpoint {path}: no config.json (expected a Hugging Face model directory)")
    try:
        json.loads(config.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config}: not valid JSON ({exc}) (from --hf-checkpoint)") from None


def _check_rollout_path_template(flag: str, template: str | None) -> None:
    """A dump path may name ``{rollout_id}`` and nothing else (it is filled in with ``str.format``)."""
    if template is None:
        return
    try:
        template.format(rollout_id=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{flag} {template}: only {{rollout_id}} can be filled in ({type(exc).__name__}: {exc})"
        ) from None


def _check_train_data(args: argparse.Namespace) -> None:
    source = resolve("data_sources", args.data_source_path)
    if source is not RolloutDataSource:
        return  # a custom data source reads its own inputs, in its own way
    if args.buffer_filter_path:
        load_object(args.buffer_filter_path, "--buffer-filter-path")
    prompts = load_train_prompts(args)
    # Without --num-rollout the run makes len(prompts) // --rollout-batch-size rollouts per epoch: none at all here.
    if args.num_rollout is None and len(prompts) < args.rollout_batch_size:
        raise DataError(
            f"{args.prompt_data}: {len(prompts)} prompts, fewer than --rollout-batch-size {args.rollout_batch_size}, "
            "so not one rollout would run; set --num-rollout to go over the data more than once"
        )
