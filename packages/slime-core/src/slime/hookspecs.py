"""The hooks a slime plugin can implement.

Registration hooks receive a ``register(name, obj)`` callable, so one plugin can register many things and
slime decides what a duplicate means. Plugins are found through the ``slime`` entry-point group.
"""

import argparse
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("slime")
hookimpl = pluggy.HookimplMarker("slime")


@hookspec
def slime_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add command-line flags (in a group of the plugin's own) to slime's parser."""


@hookspec
def slime_register_commands(register) -> None:
    """Register ``slime`` subcommands: ``register(name, run)`` with ``run(argv: list[str]) -> int``.

    The first line of ``run``'s docstring is the command's summary in ``slime --help``."""


@hookspec
def slime_validate_args(args: argparse.Namespace) -> None:
    """Check the plugin's own flags after parsing (and fill derived defaults); raise ``ConfigError`` naming them."""


@hookspec
def slime_register_train_backends(register) -> None:
    """Register train backends (``--train-backend NAME``): classes implementing ``slime.backends.TrainBackend``."""


@hookspec
def slime_register_rollout_backends(register) -> None:
    """Register rollout backends (``--rollout-backend NAME``): classes implementing ``slime.backends.RolloutEngine``."""


@hookspec
def slime_register_reward_functions(register) -> None:
    """Register reward functions (``--rm-type NAME``): ``async f(args, sample) -> float | dict``."""


@hookspec
def slime_register_rollout_functions(register) -> None:
    """Register rollout functions (``--rollout-function-path NAME``)."""


@hookspec
def slime_register_generate_functions(register) -> None:
    """Register generate functions (``--custom-generate-function-path NAME``): one sample's (multi-turn) generation."""


@hookspec
def slime_register_tools(register) -> None:
    """Register tools for multi-turn rollouts (``multi_turn_tools``): ``slime.rollout.tools.Tool`` objects, each
    under its own name, which is the name the model calls it by."""


@hookspec
def slime_register_sample_filters(register) -> None:
    """Register dynamic-sampling filters (``--dynamic-sampling-filter-path NAME``): ``f(args, group) -> keep``."""


@hookspec
def slime_register_advantage_estimators(register) -> None:
    """Register advantage estimators (``--advantage-estimator NAME``)."""


@hookspec
def slime_register_policy_losses(register) -> None:
    """Register policy losses (``--loss-type NAME``)."""


@hookspec
def slime_register_importance_weights(register) -> None:
    """Register importance-weight functions for off-policy correction (``--custom-tis-function-path NAME``)."""


@hookspec
def slime_register_metric_sinks(register) -> None:
    """Register metric sinks: classes with ``log(metrics, step_key)`` and ``finish()``."""


@hookspec
def slime_register_data_sources(register) -> None:
    """Register prompt data sources (``--data-source-path NAME``)."""


@hookspec
def slime_on_rollout_end(args: argparse.Namespace, rollout_id: int, samples: list, metrics: dict[str, Any]) -> None:
    """Called after a rollout's metrics are computed and before they are logged; add keys to ``metrics``.

    Runs in the rollout manager's process (where the samples are), not in the driver."""


@hookspec
def slime_on_train_step_end(args: argparse.Namespace, rollout_id: int, step_id: int, metrics: dict[str, Any]) -> None:
    """Called after each optimizer step with its ``train/*`` metrics; add keys to ``metrics``."""


@hookspec
def slime_on_eval_end(args: argparse.Namespace, rollout_id: int, results: dict, metrics: dict[str, Any]) -> None:
    """Called after an evaluation's metrics are computed with its per-dataset results; add keys to ``metrics``.

    Runs in the rollout manager's process (where the samples are), as ``slime_on_rollout_end`` does."""
