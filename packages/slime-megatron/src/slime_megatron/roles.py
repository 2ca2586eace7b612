"""Per-role training arguments (``--megatron-config-path``): what the actor and PPO's critic each train with.

slime's format: a YAML file whose top-level ``megatron`` list holds role-tagged entries, at most one per role,

    megatron:
      - {name: default, role: critic, overrides: {lr: 1e-5}}
      - {name: default, role: actor, overrides: {lr: 1e-6}}

``overrides`` (or its older name ``args``) maps argument names (``lr``, not ``--lr``) to values and is applied on
top of the command line's arguments; a role without an entry keeps them. ``num_nodes`` / ``num_gpus_per_node`` are
ignored, as in slime: the train ranks' layout comes from the command line, and actor and critic share it.
"""

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from slime.errors import ConfigError

ROLES = ("actor", "critic")
# Both roles run on the same train ranks with one layout (slime: "must use the same Megatron parallel topology").
LAYOUT_KEYS = (
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "context_parallel_size",
    "expert_model_parallel_size",
    "expert_tensor_parallel_size",
    "sequence_parallel",
)
IGNORED_KEYS = ("num_nodes", "num_gpus_per_node")
# Where the critic's checkpoints go when its entry names no `save` / `load`: beside the actor's, not over them.
CRITIC_SUBDIR = "critic"


def role_overrides(path: str | Path, role: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``overrides`` of ``role``'s entry in the file at ``path`` (empty without one), checked and typed like the
    command line's values; every mistake is a ``ConfigError`` naming the file."""
    where = f"--megatron-config-path {path}"
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    entries = data.get("megatron") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where}: expected a top-level 'megatron' list of role entries, "
            "e.g. megatron: [{name: default, role: critic, overrides: {lr: 1e-5}}]"
        )
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            got = entry.get("role") if isinstance(entry, dict) else entry
            raise ConfigError(f"{where}: entry {index} needs role: actor or role: critic, got {got!r}")
    mine = [entry for entry in entries if entry["role"] == role]
    if len(mine) > 1:
        raise ConfigError(f"{where}: {len(mine)} entries have role {role}; at most one may")
    if not mine:
        return {}
    overrides = mine[0].get("overrides", mine[0].get("args")) or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: role {role}'s overrides must be a mapping of argument names to values")
    typed = {}
    for key, value in overrides.items():
        if key in IGNORED_KEYS:
            continue
        if not hasattr(args, key):
            raise ConfigError(f"{where}: role {role} overrides '{key}', which is no argument (names as lr, not --lr)")
        value = _typed_like(getattr(args, key), value)
        if key in LAYOUT_KEYS and value != getattr(args, key):
            raise ConfigError(
                f"{where}: role {role} sets {key}={value!r}; actor and critic share the train ranks and their "
                f"layout, which the command line sets ({getattr(args, key)!r})"
            )
        typed[key] = value
    return typed


def _typed_like(original: Any, value: Any) -> Any:
    # YAML reads 1e-5 as a string; the command line would have made it the argument's type.
    if isinstance(value, str) and isinstance(original, int | float) and not isinstance(original, bool):
        try:
            return type(original)(float(value)) if isinstance(original, float) else int(value)
        except ValueError:
            return value
    return value


def role_args(args: argparse.Namespace, role: str) -> argparse.Namespace:
    """The arguments ``role`` trains with: the command line's, its ``--megatron-config-path`` overrides on top, and
    for the critic what only an actor does turned off (KL, distillation, routing replay, the old actor) and its own
    checkpoint directories (``{save}/critic``, ``{load}/critic`` unless its entry names them)."""
    if role not in ROLES:
        raise ValueError(f"unknown train role {role!r} (expected one of {ROLES})")
    overrides = role_overrides(args.megatron_config_path, role, args) if args.megatron_config_path else {}
    result = copy.copy(args)
    for key, value in overrides.items():
        setattr(result, key, value)
    if role == "critic":
        result.kl_coef = 0.0
        result.use_kl_loss = False
        result.kl_loss_coef = 0.0
        result.use_opd = False
        result.use_routing_replay = result.use_rollout_routing_replay = False
        result.keep_old_actor = False
        result.ref_update_interval = None
        result.custom_advantage_function_path = None
        result.save_hf = None  # the critic is no language model to export
        if "save" not in overrides and args.save:
            result.save = os.path.join(args.save, CRITIC_SUBDIR)
        if "load" not in overrides and args.load:
            result.load = os.path.join(args.load, CRITIC_SUBDIR)
    return result
