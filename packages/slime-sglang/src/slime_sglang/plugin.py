"""slime-sglang's entry module: registers its parts with slime and nothing else."""

import argparse

from slime.hookspecs import hookimpl
from slime_sglang.arguments import add_sglang_arguments, validate_sglang_args
from slime_sglang.engine import SGLangRolloutEngine


@hookimpl
def slime_register_rollout_backends(register) -> None:
    register("sglang", SGLangRolloutEngine)


@hookimpl
def slime_add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sglang_arguments(parser)


@hookimpl
def slime_validate_args(args: argparse.Namespace) -> None:
    validate_sglang_args(args)
