"""Megatron-LM's own flags (``megatron.training.arguments``, as installed), with the defaults slime overrides.

slime takes Megatron's whole argument set, so launch scripts pass Megatron flags unchanged. Importing megatron takes
~20 s (it is also CUDA-only until ``cpu_compat.enable()``), far too slow for every ``slime`` command, so the option
list is generated once into ``megatron_options.json`` (``python -m slime_megatron.megatron_flags`` rewrites it) and
a test checks that it still matches the installed megatron-core.

Values of type int, float and str are converted while parsing. Options whose type is one of Megatron's own
functions or enums (``--moe-layer-freq``, ``--attention-backend``, ``--window-size``, ...) keep the text the user
typed; ``megatron_namespace`` converts it with Megatron's function when a training rank imports megatron.
"""

import argparse
import enum
import functools
import json
from pathlib import Path
from typing import Any

from slime.errors import ConfigError

OPTIONS_FILE = Path(__file__).with_name("megatron_options.json")

# Types converted while parsing; any other type is Megatron's own function, applied in megatron_namespace.
PLAIN_TYPES = {"int": int, "float": float, "str": str}
MEGATRON_TYPE = "megatron"

# Megatron defaults that slime changes (slime's reset_arg calls), so a script means the same thing in both.
SLIME_DEFAULTS: dict[str, Any] = {
    "distributed_backend": "nccl",
    "distributed_timeout_minutes": 10,
    "global_batch_size": None,
    "micro_batch_size": 1,
    "eval_interval": None,
    "load": None,
    "save": None,
    "save_interval": None,
    "async_save": False,
    "no_save_optim": False,
    "seed": 1234,
    "clip_grad": 1.0,
    "lr": 1e-6,
    "wandb_project": None,
    "record_memory_history": False,
    "mtp_num_layers": None,
    "mtp_loss_scaling_factor": 0.2,
    "padded_vocab_size": None,
}

# Defaults of this backend that differ from Megatron's (and so from slime's). The backend builds megatron-core's
# local layer spec (no TransformerEngine). Dropout 0 and a constant learning rate are what it trained with before it
# took Megatron's flags; slime's own scripts pass --attention-dropout 0.0 --hidden-dropout 0.0 and
# --lr-decay-style constant explicitly, so they mean the same here.
BACKEND_DEFAULTS: dict[str, Any] = {
    "transformer_impl": "local",
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
    "lr_decay_style": "constant",
}

# Flags of slime's patched Megatron-LM (GLM4's norms after attention and after the MLP), which megatron-core 0.19.2
# lacks; arguments.py defines them, the local layer spec builds them (post_norms.py).
PATCH_DEFAULTS: dict[str, Any] = {"post_self_attn_layernorm": False, "post_mlp_layernorm": False}


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "boolean_optional"
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    if type(action) is argparse._StoreAction:
        return "store"
    raise TypeError(f"{action.option_strings}: unexpected argparse action {type(action).__name__}")


def _text(value: Any) -> Any:
    """A default or choice as JSON: enums by name (what a user types), everything else as is."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


def generate_option_table() -> list[dict[str, Any]]:
    """Describe every option of the installed Megatron-LM argument parser (slow: imports megatron)."""
    from slime_megatron import cpu_compat

    cpu_compat.enable()
    from megatron.training.arguments import add_megatron_arguments

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_megatron_arguments(parser)
    table = []
    for action in parser._actions:
        type_name = getattr(action.type, "__name__", None) if action.type is not None else None
        table.append(
            {
                "dest": action.dest,
                "options": list(action.option_strings),
                "kind": _kind(action),
                "nargs": action.nargs,
                "type": type_name if type_name in PLAIN_TYPES or action.type is None else MEGATRON_TYPE,
                "choices": [str(_text(c)) for c in action.choices] if action.choices else None,
                "default": _text(action.default),
                "help": " ".join((action.help or "").split()),
            }
        )
    return table


@functools.cache
def load_option_table() -> list[dict[str, Any]]:
    return json.loads(OPTIONS_FILE.read_text(encoding="utf-8"))


def default_of(dest: str) -> Any:
    """What a Megatron option is when a script does not give it (slime's default where slime changes it)."""
    return _defaults()[dest]


def default_args(hf_checkpoint: str) -> argparse.Namespace:
    """Every Megatron option at its default, for tools that build a model without slime's flags (``slime convert``)."""
    return argparse.Namespace(**_defaults(), hf_checkpoint=hf_checkpoint)


@functools.cache
def _defaults() -> dict[str, Any]:
    return (
        {entry["dest"]: entry["default"] for entry in load_option_table()}
        | SLIME_DEFAULTS
        | BACKEND_DEFAULTS
        | PATCH_DEFAULTS
    )


class _CheckedChoice(argparse.Action):
    """Stores the text of an option converted later by Megatron's own type function, checked against its choices."""

    def __init__(self, option_strings, dest, megatron_choices: list[str] | None = None, **kwargs) -> None:
        self.megatron_choices = megatron_choices
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        for value in values if isinstance(values, list) else [values]:
            if self.megatron_choices and value not in self.megatron_choices:
                raise ConfigError(
                    f"{option_string}: invalid choice {value!r} (choose from {', '.join(self.megatron_choices)})"
                )
        setattr(namespace, self.dest, values)


def add_megatron_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every Megatron-LM option not already defined (slime-core defines --seed, --load, --lr, ... itself)."""
    taken = {option for action in parser._actions for option in action.option_strings}
    group = parser.add_argument_group("megatron", "Megatron-LM's own flags (megatron-core, as installed)")
    for entry in load_option_table():
        if taken & set(entry["options"]):
            continue
        default = default_of(entry["dest"])
        common = {"dest": entry["dest"], "default": default, "help": entry["help"].replace("%", "%%")}
        kind = entry["kind"]
        if kind == "store_true":
            group.add_argument(*entry["options"], action="store_true", **common)
        elif kind == "store_false":
            group.add_argument(*entry["options"], action="store_false", **common)
        elif kind == "boolean_optional":
            group.add_argument(*entry["options"], action=argparse.BooleanOptionalAction, **common)
        elif entry["type"] == MEGATRON_TYPE:
            group.add_argument(
                *entry["options"],
                action=_CheckedChoice,
                nargs=entry["nargs"],
                megatron_choices=entry["choices"],
                **common,
            )
        else:
            convert = PLAIN_TYPES.get(entry["type"] or "str")
            choices = [convert(c) for c in entry["choices"]] if entry["choices"] else None
            group.add_argument(*entry["options"], type=convert, nargs=entry["nargs"], choices=choices, **common)


def main() -> None:
    """Regenerate the option table from the installed megatron-core: ``python -m slime_megatron.megatron_flags``."""
    table = generate_option_table()
    OPTIONS_FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} Megatron-LM options to {OPTIONS_FILE}")


if __name__ == "__main__":
    main()
