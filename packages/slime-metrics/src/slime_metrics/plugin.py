"""slime-metrics' entry module: registers its parts with slime and nothing else."""

import argparse

from slime.hookspecs import hookimpl


@hookimpl
def slime_add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("wandb and tensorboard (slime-metrics)")
    group.add_argument("--use-wandb", action="store_true")
    group.add_argument("--wandb-project", default=None)
    group.add_argument("--wandb-team", default=None, help="W&B entity")
    group.add_argument("--wandb-group", default=None)
    group.add_argument("--wandb-key", default=None)
    group.add_argument("--wandb-host", default=None)
    group.add_argument("--wandb-mode", choices=["online", "offline", "disabled"], default=None)
    group.add_argument("--wandb-dir", default=None)
    group.add_argument("--wandb-run-id", default=None)
    group.add_argument("--disable-wandb-random-suffix", action="store_true")
    group.add_argument("--use-tensorboard", action="store_true")
    group.add_argument("--tb-project-name", default=None)
    group.add_argument("--tb-experiment-name", default=None)
