"""The three sinks read back: metrics.jsonl, the offline W&B run (its .wandb file) and TensorBoard agree."""

import logging
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from readers import read_jsonl, read_tensorboard, read_wandb
from samples import rollout_samples

from slime.hookspecs import hookimpl
from slime.metrics import finish_metrics, init_metrics, log, log_eval, log_perf, log_rollout, log_train_step
from slime.metrics.steps import STEP_KEYS
from slime_metrics.wandb_sink import STEP_METRICS

KEY = "k3y" + "0123456789abcdef" * 2 + "x" * 5  # 40 characters, like a W&B key


def run_a_few_steps(args) -> list[dict]:
    """Log what two rollouts with two optimizer steps each, one eval and trainer timings would log."""
    logged = []
    for rollout_id in range(2):
        logged.append(log_rollout(args, rollout_id, rollout_samples(), rollout_time=1.5 + rollout_id))
        for step_id in range(2):
            logged.append(
                log_train_step(args, rollout_id, step_id, {"loss": 0.1 * step_id - rollout_id, "kl_loss": 1e-3})
            )
        logged.append(log_perf(args, rollout_id, {"train_wait": 0.5, "train": 2.0, "actor_train": 1.0}, seq_lens=[64]))
    logged.append(log_eval(args, 2, {"math": rollout_samples()}, n_samples_per_prompt={"math": 4}))
    return logged


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_jsonl_wandb_and_tensorboard_agree(make_args, tmp_path, monkeypatch):
    # The key also on the command line: W&B records sys.argv in the run's metadata.
    monkeypatch.setattr(sys, "argv", ["slime", "train", "--wandb-key", KEY])
    args = make_args(
        "--use-wandb",
        "--wandb-mode",
        "offline",
        "--wandb-project",
        "proj",
        "--wandb-group",
        "grp",
        "--wandb-key",
        KEY,
        "--use-tensorboard",
        "--tb-project-name",
        "tbp",
        "--tb-experiment-name",
        "exp",
        "--log-passrate",
        "--log-multi-turn",
    )
    init_metrics(args)
    logged = run_a_few_steps(args)
    finish_metrics()

    # metrics.jsonl: one object per log call, exactly what was logged, step key included.
    lines = read_jsonl(tmp_path)
    assert lines == logged
    assert [next(k for k in STEP_KEYS if k in line) for line in lines] == [
        "rollout/step",
        "train/step",
        "train/step",
        "rollout/step",
    ] * 2 + ["eval/step"]
    assert {k for line in lines for k in line if k.startswith("passrate/")} == {f"passrate/pass@{k}" for k in (1, 2, 4)}

    # W&B: the same rows and values, slime's step-metric definitions, and the run's naming and config.
    run = read_wandb(tmp_path / "wandb")
    assert run.history == lines
    assert run.step_metrics == dict(STEP_METRICS)
    assert run.run_id == args.wandb_run_id
    assert run.group.startswith("grp_") and run.name == f"{run.group}-RANK_0"
    assert run.config["wandb_key"] == "<redacted>"
    assert run.config["rollout_batch_size"] == 2 and run.config["use_tensorboard"] is True

    # TensorBoard: every metric against its own step key, values as float32 (TensorBoard's scalar type).
    scalars = read_tensorboard(tmp_path / "tensorboard" / "tbp" / "exp")
    expected: dict[str, list] = {}
    for line in lines:
        step_key = next(k for k in STEP_KEYS if k in line)
        for key, value in line.items():
            if key != step_key:
                expected.setdefault(key, []).append((line[step_key], float(np.float32(value))))
    assert scalars == expected

    # The key is nowhere in the run's files (config, metadata, logs, event files, metrics.jsonl).
    for path in files_under(tmp_path):
        assert KEY.encode() not in path.read_bytes(), path


def test_a_failing_sink_warns_once_and_logging_goes_on(make_args, tmp_path, plugin, caplog):
    class Broken:
        def __init__(self, args, *, primary, label):
            pass

        def log(self, metrics, step_key):
            raise ConnectionError("no network")

        def finish(self):
            pass

    class CannotStart:
        def __init__(self, args, *, primary, label):
            raise PermissionError("bad key")

    class Plugin:
        @hookimpl
        def slime_register_metric_sinks(self, register):
            register("broken", Broken)
            register("cannot-start", CannotStart)

    plugin(Plugin(), "test-broken-sinks")
    with caplog.at_level(logging.WARNING):
        metric_logger = init_metrics(make_args())
        for step in range(3):
            log(None, {"rollout/x": step, "rollout/step": step}, "rollout/step")
        finish_metrics()
    assert set(metric_logger.sinks) == {"broken", "jsonl"}
    assert [r.getMessage() for r in caplog.records] == [
        "metric sink 'cannot-start' (from plugin 'test-broken-sinks') failed to start (PermissionError: bad key); "
        "the run goes on without it",
        "metric sink 'broken' failed (ConnectionError: no network); the run goes on, and further failures of this "
        "sink are counted, not repeated",
        "metric sink 'broken' failed 3 of 3 log calls",
    ]
    assert [line["rollout/x"] for line in read_jsonl(tmp_path)] == [0, 1, 2]


def test_wandb_disabled_mode_starts_no_run(make_args, tmp_path):
    metric_logger = init_metrics(make_args("--use-wandb", "--wandb-mode", "disabled"))
    assert set(metric_logger.sinks) == {"jsonl"}
    assert not (tmp_path / "wandb").exists()


SECONDARY = """
import pickle, sys
from slime.metrics import finish_metrics, init_metrics, log
args = pickle.loads(open(sys.argv[1], "rb").read())
init_metrics(args, primary=False, label="rollout_manager")
log(args, {"rollout/from_actor": 7.0, "rollout/step": 1}, "rollout/step")
finish_metrics()
"""


def test_an_actor_joins_the_drivers_run_offline(make_args, tmp_path):
    args = make_args("--use-wandb", "--wandb-group", "grp", "--disable-wandb-random-suffix", "--use-tensorboard")
    init_metrics(args)
    log(args, {"rollout/from_driver": 1.0, "rollout/step": 0}, "rollout/step")
    # What the driver hands to actors: args, now carrying the run id and the TensorBoard experiment.
    (tmp_path / "args.pkl").write_bytes(pickle.dumps(args))
    subprocess.run([sys.executable, "-c", SECONDARY, str(tmp_path / "args.pkl")], check=True, timeout=120)
    finish_metrics()

    assert read_jsonl(tmp_path) == [
        {"rollout/from_driver": 1.0, "rollout/step": 0},
        {"rollout/from_actor": 7.0, "rollout/step": 1},
    ]
    scalars = read_tensorboard(tmp_path / "tensorboard" / "slime" / args.tb_experiment_name)
    assert scalars == {"rollout/from_driver": [(0, 1.0)], "rollout/from_actor": [(1, 7.0)]}
    # W&B's shared mode is online only: offline, the actor writes its own run in the driver's group.
    runs = {run.run_id: run for run in map(read_wandb, sorted((tmp_path / "wandb").rglob("*.wandb")))}
    assert set(runs) == {args.wandb_run_id, f"{args.wandb_run_id}-rollout_manager"}
    actor = runs[f"{args.wandb_run_id}-rollout_manager"]
    assert actor.group == runs[args.wandb_run_id].group == "grp"
    assert actor.history == [{"rollout/from_actor": 7.0, "rollout/step": 1}]
    assert actor.step_metrics == dict(STEP_METRICS)


@pytest.fixture
def unresponsive_server():
    """A TCP server that accepts connections and never answers: W&B with a key but no reachable server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()


def test_unreachable_wandb_falls_back_to_offline_quickly(make_args, tmp_path, unresponsive_server, caplog):
    args = make_args(
        "--use-wandb",
        "--wandb-mode",
        "online",
        "--wandb-host",
        unresponsive_server,
        "--wandb-key",
        KEY,
        "--wandb-init-timeout",
        "2",
    )
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        init_metrics(args)
    assert time.monotonic() - start < 20
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "W&B: no online run" in warning and "logging OFFLINE" in warning and "wandb sync" in warning
    assert args.wandb_mode == "offline"  # actors started from these args go straight to offline
    log(args, {"rollout/x": 1.0, "rollout/step": 0}, "rollout/step")
    finish_metrics()
    offline = [p for p in (tmp_path / "wandb").rglob("*.wandb") if "offline-run" in str(p)]
    assert [row for run in map(read_wandb, offline) for row in run.history] == [{"rollout/x": 1.0, "rollout/step": 0}]
    for path in files_under(tmp_path):
        assert KEY.encode() not in path.read_bytes(), path
