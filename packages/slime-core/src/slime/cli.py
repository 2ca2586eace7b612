"""The ``slime`` command: ``train``, ``eval``, ``plugins``, ``download``, and the commands plugins register
(``slime_register_commands``: ``report`` from slime-metrics, ``convert`` from slime-megatron).

A user mistake (``SlimeError``, also when a Ray actor raised it) is printed as one line, without a traceback, and
exits with status 2; so is a Ray actor of the run that died or whose node was lost (``slime.ray.failures``).
Inputs are checked (``slime.config.preflight``) before Ray starts or anything is written.
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator

from slime import __version__
from slime.errors import SlimeError


def usage() -> str:
    """Every installed command with its summary (its function's first docstring line): core's, then each plugin's
    with the distribution that provides it."""
    from slime.plugins import registry

    def summary(run: Callable[[list[str]], int]) -> str:
        return (run.__doc__ or "").strip().split("\n", 1)[0]

    lines = ["usage: slime <command> [flags]", "", "commands:"]
    lines += [f"  {name:<10} {summary(run)}" for name, run in COMMANDS.items()]
    for name, entry in sorted(registry("commands").entries.items()):
        provider = f"{entry.plugin.distribution} {entry.plugin.version}" if entry.plugin.distribution else "in-process"
        lines.append(f"  {name:<10} {summary(entry.obj)} [{provider}]")
    lines += ["", "`slime <command> --help` shows a command's flags."]
    return "\n".join(lines)


def _train(argv: list[str]) -> int:
    """run RL training (slime's flags; --config FILE.yaml)"""
    from slime.config.arguments import parse_args
    from slime.config.preflight import check_run_inputs

    args = parse_args(argv, prog="slime train")
    check_run_inputs(args)
    if args.dry_run:
        return _print_dry_run(args)
    _show_progress()
    from slime.loop import train

    with _ray(args):
        train(args)
    return 0


def _print_dry_run(args: argparse.Namespace) -> int:
    from slime.config.dry_run import describe

    print(describe(args))
    print("dry run: flags and inputs checked; nothing started")
    return 0


def _show_progress() -> None:
    """Runs print slime's console lines (``rollout 3: {...}``), which go through logging at INFO."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@contextlib.contextmanager
def _ray(args: argparse.Namespace) -> Iterator[None]:
    """Join the Ray cluster named by RAY_ADDRESS, or start a local one big enough for the run's placement.

    When the run ends, the actors' output still on its way is waited for and Ray is shut down, before the CLI prints
    how the run ended: that output would otherwise be lost, or come after (and bury) an error line.
    """
    import ray

    from slime.ray.failures import actor_lost, alive_nodes
    from slime.ray.output import drain_actor_output
    from slime.ray.placement import layout

    if ray.is_initialized():  # a caller in this process (a notebook, a test) owns it
        yield
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        bundles = layout(args)[0]
        # CPU bundles are logical: a small machine still places the trainer and the engines side by side.
        # address="local": a runtime of this run's own; a cluster already running here is used only when RAY_ADDRESS
        # names it (as `ray job submit` does), never picked by guessing.
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, bundles + 1), include_dashboard=False)
    signal.signal(signal.SIGTERM, _raise_terminated)  # again: Ray's core worker replaced it (it logs and aborts)
    nodes_at_start = alive_nodes()
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True  # the user wants out now, not after the output
        raise
    except Exception as error:
        # An actor killed or its node lost: one line naming it, told while the node table can still be read.
        lost = None if user_error(error) is not None else actor_lost(error, nodes_at_start)
        if lost is None:
            raise
        raise lost from error
    finally:
        if not interrupted:
            drain_actor_output()
        ray.shutdown()


def _eval(argv: list[str]) -> int:
    """run evaluation only (--eval-prompt-data or --eval-config)"""
    from slime.config.arguments import parse_args
    from slime.config.preflight import check_run_inputs
    from slime.errors import ConfigError

    args = parse_args(argv, prog="slime eval")
    if not (args.eval_prompt_data or args.eval_config):
        raise ConfigError("slime eval needs --eval-prompt-data or --eval-config")
    check_run_inputs(args, train=False)
    if args.dry_run:
        return _print_dry_run(args)
    _show_progress()
    from slime.loop import eval_only

    with _ray(args):
        eval_only(args)
    return 0


def _plugins(argv: list[str]) -> int:
    """list installed plugins, their versions and what they registered"""
    from slime.plugins import plugins, registered_by

    parser = argparse.ArgumentParser(prog="slime plugins", description="List installed slime plugins.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = [
        {
            "name": p.name,
            "distribution": p.distribution,
            "version": p.version,
            "registered": registered_by(p.name),
        }
        for p in plugins()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  ({row['distribution']} {row['version']})")
        for kind, names in row["registered"].items():
            print(f"    {kind}: {', '.join(names)}")
    return 0


def _download(argv: list[str]) -> int:
    """download a model or dataset from the Hugging Face hub"""
    from slime import download

    parser = argparse.ArgumentParser(prog="slime download", description="Download a model or dataset from the hub.")
    download.add_arguments(parser)
    return download.run(parser.parse_args(argv))


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train,
    "eval": _eval,
    "plugins": _plugins,
    "download": _download,
}


def _command(name: str) -> Callable[[list[str]], int]:
    """A core command, or one a plugin registered through ``slime_register_commands``."""
    if name in COMMANDS:
        return COMMANDS[name]
    from slime.plugins import registry

    commands = registry("commands").entries
    if name not in commands:
        raise SlimeError(f"unknown command '{name}'; commands: {', '.join([*COMMANDS, *sorted(commands)])}")
    return commands[name].obj


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's preemption, ``docker stop``): stop as Ctrl-C does, so that ``ray.shutdown``
    runs and ends the actors, the engines and Ray's own processes. Without it Python dies at once and Ray's agents
    outlive the run."""


_sigterm_received = False


def _raise_terminated(signum: int, frame: object) -> None:
    global _sigterm_received
    # Remembered as well as raised: inside a blocking ``ray.get`` Ray's core worker catches the exception and raises
    # a plain KeyboardInterrupt in its place (measured), so the type alone cannot tell SIGTERM from Ctrl-C.
    _sigterm_received = True
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        _set_environment()  # listing the commands loads the plugins, which import Ray
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"slime-core {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    _set_environment()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _command(command)(rest)
    except KeyboardInterrupt:
        if _sigterm_received:  # set whenever Terminated was raised, and also when Ray replaced it
            print(f"slime {command}: stopped by SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        return 130
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise  # a bug, not a user mistake: its traceback is what helps
        print(f"slime {command}: error: {error}", file=sys.stderr)
        return 2


def _set_environment() -> None:
    """Settings read when Ray and tqdm are imported (plugins import them while the flags are parsed)."""
    # Under `uv run`, Ray would otherwise upload the working directory and rebuild a virtualenv for every worker.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not sys.stderr.isatty():
        # Progress bars (rollout and eval, drawn here for the actors) are for a terminal: in a log each redraw is
        # one more line, and a bar closed at exit would print below an error line.
        os.environ.setdefault("TQDM_DISABLE", "1")


def user_error(exc: BaseException) -> SlimeError | None:
    """The ``SlimeError`` behind ``exc``: ``exc`` itself, or the one a Ray task raised in an actor.

    Ray re-raises an actor's exception in the driver as a ``RayTaskError`` that also subclasses the original class,
    but whose message is the remote traceback; the original, one-line exception is its ``cause``.
    """
    while isinstance(getattr(exc, "cause", None), BaseException) and exc.cause is not exc:  # type: ignore[attr-defined]
        exc = exc.cause  # type: ignore[attr-defined]
    return exc if isinstance(exc, SlimeError) else None


if __name__ == "__main__":
    sys.exit(main())
