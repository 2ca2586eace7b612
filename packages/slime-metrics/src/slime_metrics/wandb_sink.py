"""The ``wandb`` metric sink: one W&B run per training run, shared by the driver and the Ray actors that log.

Online, the driver starts the run in W&B's ``shared`` mode as primary and actors join the same run id as
secondaries. W&B's ``shared`` mode is an online mode, so offline each actor writes its own offline run
(``<run id>-<label>``) in the driver's group instead: ``wandb sync`` uploads them side by side, and
``metrics.jsonl`` still holds everything in one file.

The API key is passed to W&B through its settings (never ``wandb.login``, which would store it in ``~/.netrc``), is
left out of the run config, and is blanked from the command line W&B records while the run starts.
"""

import argparse
import contextlib
import copy
import logging
import os
import secrets
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slime.metrics.steps import EVAL_STEP, ROLLOUT_STEP, TRAIN_STEP

logger = logging.getLogger(__name__)

REDACTED = "<redacted>"
# Flags whose values must never reach the run config (names of args attributes).
SECRET_ARGS = frozenset({"wandb_key"})
# Environment variables copied into the config, as slime does.
CONFIG_ENV_VARS = ("SLURM_JOB_ID",)

# (metric or glob, its step metric): exactly slime's `_init_wandb_common`.
STEP_METRICS: tuple[tuple[str, str | None], ...] = (
    (TRAIN_STEP, None),
    ("train/*", TRAIN_STEP),
    (ROLLOUT_STEP, None),
    ("rollout/*", ROLLOUT_STEP),
    ("multi_turn/*", ROLLOUT_STEP),
    ("passrate/*", ROLLOUT_STEP),
    (EVAL_STEP, None),
    ("eval/*", EVAL_STEP),
    ("perf/*", ROLLOUT_STEP),
)


def wandb_mode(args: argparse.Namespace) -> str:
    """``--wandb-mode``, else ``WANDB_MODE``, else online."""
    return args.wandb_mode or os.environ.get("WANDB_MODE") or "online"


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run config: every flag (secrets redacted) plus whitelisted environment variables."""
    config = copy.deepcopy(vars(args))
    for name in SECRET_ARGS:
        if config.get(name) is not None:
            config[name] = REDACTED
    config["env_vars"] = {name: os.environ[name] for name in CONFIG_ENV_VARS if name in os.environ}
    return config


def _group_and_name(args: argparse.Namespace) -> tuple[str | None, str | None]:
    # slime's naming: group "<group>_<random id>", run "<group>-RANK_0"; without the suffix both are the group.
    if args.wandb_group is None:
        return None, None
    if args.wandb_random_suffix:
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        group = f"{args.wandb_group}_{suffix}"
        return group, f"{group}-RANK_0"
    return args.wandb_group, args.wandb_group


@contextlib.contextmanager
def _argv_redacted(secret: str | None) -> Iterator[None]:
    """W&B records ``sys.argv`` in the run's metadata when it starts; keep a key given as a flag out of it."""
    saved = sys.argv
    if secret:
        sys.argv = [arg.replace(secret, REDACTED) for arg in saved]
    try:
        yield
    finally:
        sys.argv = saved


def _disable_sdk_analytics() -> None:
    # W&B's own SDK telemetry posts to the server at exit, and blocks exit for ~10 s per try when the server is
    # unreachable; it is not run data, so it is turned off. Internal API: ignore it if it moves.
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):
        pass


class WandbSink:
    """Logs to W&B (``--use-wandb``), with slime's step metrics; falls back to offline if W&B cannot be reached."""

    @classmethod
    def enabled(cls, args: argparse.Namespace) -> bool:
        return bool(args.use_wandb) and wandb_mode(args) != "disabled"

    def __init__(self, args: argparse.Namespace, *, primary: bool = True, label: str = "driver") -> None:
        import wandb

        self.primary = primary
        self.label = label
        mode = wandb_mode(args)
        if not primary and args.wandb_run_id is None:
            raise RuntimeError("no W&B run to join: the driver's init_metrics(args) sets args.wandb_run_id")
        _disable_sdk_analytics()
        wandb_dir = Path(args.wandb_dir or args.output_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.run = self._init(wandb, args, mode, wandb_dir)
        except (wandb.errors.Error, OSError, TimeoutError) as exc:  # unreachable server, bad key, init timeout
            if mode == "offline":
                raise
            logger.warning(
                "W&B: no online run (%s: %s) within --wandb-init-timeout %gs; logging OFFLINE under %s/wandb "
                "instead; upload it later with `wandb sync`",
                type(exc).__name__,
                exc,
                args.wandb_init_timeout,
                wandb_dir,
            )
            mode = "offline"
            self.run = self._init(wandb, args, mode, wandb_dir)
            if primary:
                args.wandb_mode = "offline"  # actors started later must not wait for the unreachable server again
        for name, step_metric in STEP_METRICS:
            if step_metric is None:
                self.run.define_metric(name)
            else:
                self.run.define_metric(name, step_metric=step_metric)
        if primary:
            # What secondaries (and a later init in this process) need to join this run and its group.
            args.wandb_run_id = self.run.id
            args.wandb_group = self.run.group or args.wandb_group
            args.wandb_random_suffix = False
        where = self.run.url if mode != "offline" else self.run.dir
        logger.info("W&B %s run %s (%s): %s", mode, self.run.id, label, where)

    def _init(self, wandb: Any, args: argparse.Namespace, mode: str, wandb_dir: Path) -> Any:
        settings: dict[str, Any] = {
            "api_key": args.wandb_key,
            "base_url": args.wandb_host,
            "init_timeout": args.wandb_init_timeout,
            # Quiet also skips W&B's "logged in as" look-up, which waits 10 s more on an unreachable server.
            "silent": True,
        }
        kwargs: dict[str, Any] = {
            "entity": args.wandb_team,
            "project": args.wandb_project,
            "dir": str(wandb_dir),
            "reinit": "create_new",  # never finish or reuse a run the user's own code holds
        }
        if self.primary:
            group, name = _group_and_name(args)
            kwargs |= {"group": group, "name": name, "config": run_config(args)}
            if args.wandb_run_id is not None:  # --wandb-run-id: continue that run
                kwargs |= {"id": args.wandb_run_id, "resume": "allow"}
            settings |= {"mode": "offline"} if mode == "offline" else {"mode": "shared", "x_primary": True}
        elif mode == "offline":
            kwargs |= {
                "id": f"{args.wandb_run_id}-{self.label}",
                "group": args.wandb_group,
                "name": f"{args.wandb_group or args.wandb_run_id}-{self.label}",
            }
            settings |= {"mode": "offline"}
        else:
            kwargs |= {"id": args.wandb_run_id}
            settings |= {"mode": "shared", "x_primary": False, "x_update_finish_state": False, "x_label": self.label}
        settings = {key: value for key, value in settings.items() if value is not None}
        with _argv_redacted(args.wandb_key):
            return wandb.init(settings=wandb.Settings(**settings), **kwargs)

    def log(self, metrics: dict[str, Any], step_key: str) -> None:
        # No `step=`: each namespace is plotted against its own step metric (define_metric above).
        self.run.log(metrics)

    def finish(self) -> None:
        self.run.finish()
