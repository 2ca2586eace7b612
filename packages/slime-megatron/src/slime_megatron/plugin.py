"""slime-megatron's entry module: registers its parts with slime and nothing else.

Kept cheap to import: megatron-core loads only when a training rank initialises the backend.
"""

import argparse

from slime.hookspecs import hookimpl
from slime_megatron import arguments, convert
from slime_megatron.backend import MegatronTrainBackend


@hookimpl(trylast=True)
def slime_add_arguments(parser: argparse.ArgumentParser) -> None:
    # Last, so every flag another package defines (slime-metrics' --wandb-project, ...) keeps its owner's meaning:
    # Megatron's options whose names are taken are left out.
    arguments.add_arguments(parser)


@hookimpl
def slime_validate_args(args: argparse.Namespace) -> None:
    arguments.validate_args(args)


@hookimpl
def slime_register_train_backends(register) -> None:
    register("megatron", MegatronTrainBackend)


@hookimpl
def slime_register_commands(register) -> None:
    register("convert", convert.main)
