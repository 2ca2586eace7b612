"""slime-sglang's flags: every SGLang server option as ``--sglang-<option>``, plus the backend's own flags.

The pass-through flags come from SGLang's own ``ServerArgs.add_cli_args``. Importing SGLang pulls in torch and
thousands of modules (7+ s of CPU), far too slow for every ``slime`` command, so the option list is generated once
into ``sglang_server_options.json`` (``python -m slime_sglang.arguments`` rewrites it) and a test checks that it
still matches the installed SGLang.

What the user typed is forwarded to the server verbatim (``args.sglang_server_args``), so SGLang parses its own
options with its own rules; slime only checks numbers and fixed choices early, to fail before any server starts.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from slime.errors import ConfigError

OPTIONS_FILE = Path(__file__).with_name("sglang_server_options.json")

# SGLang options slime sets itself (from --hf-checkpoint, --seed, --rollout-num-gpus-per-engine, ports it
# allocates, --offload-rollout); offering them as --sglang-* would let two flags disagree.
MANAGED_DESTS = frozenset(
    {
        "model_path",
        "host",
        "port",
        "random_seed",
        "tp_size",
        "nccl_port",
        "dist_init_addr",
        "nnodes",
        "node_rank",
        "skip_server_warmup",
        "enable_memory_saver",
    }
)

# SGLang options whose --sglang-<option> name means something else in slime: SGLang's --config (a YAML of server
# options) would be --sglang-config, which in slime is the engine-group YAML (regular/prefill/decode groups).
RENAMED_BY_SLIME = frozenset({"config"})

PREFIX = "sglang-"


def generate_option_table() -> list[dict[str, Any]]:
    """Describe every option of the installed SGLang's server parser (slow: imports SGLang)."""
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(add_help=False)
    ServerArgs.add_cli_args(parser)
    table = []
    for action in parser._actions:
        if not action.option_strings or action.dest in MANAGED_DESTS | RENAMED_BY_SLIME:
            continue
        negative = []
        if isinstance(action, argparse.BooleanOptionalAction):
            negative = [s for s in action.option_strings if s.startswith("--no-")]
        type_name = getattr(action.type, "__name__", None) if action.type is not None else None
        table.append(
            {
                "dest": action.dest,
                "options": [s for s in action.option_strings if s.startswith("--")],
                "negative": negative,
                "nargs": action.nargs,
                "type": type_name if type_name in ("int", "float") else None,
                # Choices computed from the environment (parsers found at run time) are left to SGLang to check.
                "choices": sorted(str(c) for c in action.choices) if action.choices else None,
                "help": " ".join((action.help or "").split()),
            }
        )
    return table


def load_option_table() -> list[dict[str, Any]]:
    return json.loads(OPTIONS_FILE.read_text(encoding="utf-8"))


def slime_flag(sglang_option: str) -> str:
    """``--mem-fraction-static`` -> ``--sglang-mem-fraction-static``."""
    return "--" + PREFIX + sglang_option[2:]


class _SGLangOption(argparse.Action):
    """Stores a checked value under ``sglang_<dest>`` and records the raw tokens for the server command line."""

    def __init__(self, option_strings, dest, entry: dict[str, Any], **kwargs) -> None:
        self.entry = entry
        self.sglang_options = dict(zip(option_strings, entry["options"], strict=True))
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        raw = values if isinstance(values, list) else [] if values is None else [values]
        checked = [_check_value(option_string, self.entry, v) for v in raw]
        value = checked if isinstance(values, list) else (checked[0] if checked else values)
        setattr(namespace, self.dest, value)
        _record(namespace, [self.sglang_options[option_string], *raw])


class _SGLangSwitch(argparse._StoreTrueAction):
    """An SGLang on/off option. Subclasses ``_StoreTrueAction`` so ``--config`` YAML accepts ``true``/``false``."""

    def __init__(self, option_strings, dest, entry: dict[str, Any], **kwargs) -> None:
        self.entry = entry
        self.sglang_options = dict(zip(option_strings, entry["options"], strict=True))
        super().__init__(option_strings, dest, default=None, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sglang_option = self.sglang_options[option_string]
        setattr(namespace, self.dest, sglang_option not in self.entry["negative"])
        _record(namespace, [sglang_option])


def _record(namespace: argparse.Namespace, tokens: list[str]) -> None:
    # A fresh list each time: the parser's default list must not be shared between parses.
    namespace.sglang_server_args = [*(getattr(namespace, "sglang_server_args", None) or []), *tokens]


def _check_value(option_string: str, entry: dict[str, Any], value: str) -> Any:
    converters = {"int": int, "float": float}
    converted: Any = value
    if entry["type"] in converters:
        try:
            converted = converters[entry["type"]](value)
        except ValueError:
            raise ConfigError(f"{option_string}: expected {entry['type']}, got {value!r}") from None
    if entry["choices"] is not None and str(value) not in entry["choices"]:
        raise ConfigError(f"{option_string}: invalid choice {value!r} (choose from {', '.join(entry['choices'])})")
    return converted


def add_sglang_arguments(parser: argparse.ArgumentParser) -> None:
    """Add slime-sglang's own flags and every SGLang server option as ``--sglang-<option>``."""
    group = parser.add_argument_group("sglang", "rollout backend 'sglang' (slime-sglang)")
    group.add_argument(
        "--sglang-server-concurrency", type=int, default=512, help="in-flight /generate requests per engine"
    )
    group.add_argument("--sglang-router-ip", default=None, help="use a router someone else started (no launch)")
    group.add_argument("--sglang-router-port", type=int, default=None, help="router port (default: a free port)")
    group.add_argument(
        "--sglang-router-policy", default="round_robin", help="routing policy of the router slime launches"
    )
    group.add_argument(
        "--rollout-external-engine-addrs",
        nargs="+",
        default=None,
        help="host:port of SGLang servers someone else started; slime registers them with its router",
    )
    group.add_argument(
        "--sglang-server-start-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for a server's /health_generate (a CPU server takes 30-45 s here)",
    )
    group.add_argument(
        "--sglang-request-retry-timeout",
        type=float,
        default=600.0,
        help="seconds a /generate keeps retrying transient errors (connection lost, 5xx) before failing",
    )
    group.add_argument(
        "--sglang-config",
        default=None,
        metavar="YAML",
        help="slime's engine-group YAML (regular/prefill/decode server groups): not supported yet, refused",
    )
    parser.set_defaults(sglang_server_args=[])

    for entry in load_option_table():
        flags = [slime_flag(s) for s in entry["options"]]
        dest = "sglang_" + entry["dest"]
        help_text = f"SGLang {entry['options'][0]}: {entry['help']}".replace("%", "%%")
        if entry["nargs"] == 0:
            group.add_argument(*flags, dest=dest, action=_SGLangSwitch, entry=entry, help=help_text)
        else:
            metavar = "{" + ",".join(entry["choices"]) + "}" if entry["choices"] and len(entry["choices"]) < 8 else None
            group.add_argument(
                *flags,
                dest=dest,
                action=_SGLangOption,
                entry=entry,
                nargs=entry["nargs"],
                default=None,
                metavar=metavar,
                help=help_text,
            )


# In these cases SGLang's model code ignores what a config.json says, so the engine would serve another model than the
# checkpoint (measured on SGLang 0.5.23: a dense layer's MLP left uninitialised, NaN logits): its Qwen3-MoE builds
# every layer as experts and an lm_head of its own (sglang/srt/models/qwen3_moe.py).
_SERVED_AS = {"qwen3_moe": {"mlp_only_layers": [], "decoder_sparse_step": 1, "tie_word_embeddings": False}}


def _check_servable(model_dir: Path) -> None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return  # a missing or unreadable config.json is preflight's one-line error
    served = _SERVED_AS.get(config.get("model_type")) if isinstance(config, dict) else None
    if served is None:
        return
    # The served values are also HF's defaults: a field left out (or null) means them.
    given = {key: config.get(key) or value for key, value in served.items()}
    differs = [f"{key} {given[key]}" for key, value in served.items() if given[key] != value]
    if differs:
        raise ConfigError(
            f"--hf-checkpoint {model_dir}: SGLang serves {config['model_type']} only with "
            f"{', '.join(f'{k} {v}' for k, v in served.items())}; config.json has {', '.join(differs)}"
        )


def validate_sglang_args(args: argparse.Namespace) -> None:
    """Cross-flag rules of slime-sglang (raise ``ConfigError`` naming the flag)."""
    if args.sglang_server_concurrency < 1:
        raise ConfigError(f"--sglang-server-concurrency must be >= 1, got {args.sglang_server_concurrency}")
    if args.sglang_router_port is not None and not 0 < args.sglang_router_port < 65536:
        raise ConfigError(f"--sglang-router-port must be a TCP port, got {args.sglang_router_port}")
    for addr in args.rollout_external_engine_addrs or []:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--rollout-external-engine-addrs: expected host:port, got {addr!r}")
    if args.sglang_config is not None:
        raise ConfigError(
            f"--sglang-config {args.sglang_config}: slime's engine-group YAML (regular/prefill/decode server groups) "
            "is not supported yet; give the engines' layout with --rollout-num-gpus and --rollout-num-gpus-per-engine, "
            "and SGLang's server options as --sglang-<option> flags"
        )
    if args.sglang_server_start_timeout <= 0:
        raise ConfigError(f"--sglang-server-start-timeout must be > 0, got {args.sglang_server_start_timeout}")
    if not args.debug_train_only and args.rollout_num_gpus_per_engine > args.num_gpus_per_node:
        # slime splits such an engine over several nodes (SGLang's --nnodes); here an engine runs on one node.
        raise ConfigError(
            f"--rollout-num-gpus-per-engine {args.rollout_num_gpus_per_engine} is more than --num-gpus-per-node "
            f"{args.num_gpus_per_node}: an engine spanning several nodes is not supported; an engine runs on one node"
        )
    if args.rollout_backend == "sglang" and not args.debug_train_only and args.hf_checkpoint:
        _check_servable(Path(args.hf_checkpoint))


def main() -> None:
    """Regenerate the option table from the installed SGLang: ``python -m slime_sglang.arguments``."""
    table = generate_option_table()
    OPTIONS_FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} SGLang options to {OPTIONS_FILE}")


if __name__ == "__main__":
    main()
