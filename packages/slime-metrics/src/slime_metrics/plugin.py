"""slime-metrics' entry module: registers its flags, sinks and the ``report`` command with slime, and nothing else.

Sinks import W&B and TensorBoard only when a run starts them, so listing plugins or parsing flags stays fast.
"""

import argparse

from slime.errors import ConfigError
from slime.hookspecs import hookimpl
from slime_metrics.tensorboard_sink import TensorboardSink
from slime_metrics.wandb_sink import WandbSink


@hookimpl
def slime_add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("wandb and tensorboard (slime-metrics)")
    group.add_argument("--use-wandb", action="store_true")
    group.add_argument("--wandb-project", default=None)
    group.add_argument("--wandb-team", default=None, help="W&B entity")
    group.add_argument("--wandb-group", default=None)
    group.add_argument("--wandb-key", default=None, help="W&B API key (never written to the run config or logs)")
    group.add_argument("--wandb-host", default=None, help="W&B server URL")
    group.add_argument(
        "--wandb-mode", choices=["online", "offline", "disabled"], default=None, help="default: WANDB_MODE, or online"
    )
    group.add_argument("--wandb-dir", default=None, help="default: --output-dir")
    group.add_argument("--wandb-run-id", default=None, help="continue this W&B run")
    group.add_argument(
        "--disable-wandb-random-suffix",
        action="store_false",
        dest="wandb_random_suffix",
        help="name the W&B group exactly --wandb-group (default: append _<random id>)",
    )
    group.add_argument(
        "--wandb-init-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the W&B server before logging offline instead",
    )
    group.add_argument("--use-tensorboard", action="store_true")
    group.add_argument("--tb-project-name", default=None)
    group.add_argument("--tb-experiment-name", default=None)


@hookimpl
def slime_validate_args(args: argparse.Namespace) -> None:
    if args.wandb_init_timeout <= 0:
        raise ConfigError(f"--wandb-init-timeout must be > 0, got {args.wandb_init_timeout}")


@hookimpl
def slime_register_metric_sinks(register) -> None:
    register("wandb", WandbSink)
    register("tensorboard", TensorboardSink)


def _report(argv: list[str]) -> int:
    """PNG plots and an HTML page of a run's metrics.jsonl (slime report RUN_DIR)"""
    from slime_metrics import report  # Pillow is imported only for a report

    return report.run(argv)


@hookimpl
def slime_register_commands(register) -> None:
    register("report", _report)
