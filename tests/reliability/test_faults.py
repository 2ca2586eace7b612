"""Faults while running: a reward server that errors, hangs and recovers; W&B unreachable; the disk full while saving
a Megatron checkpoint. (Engines and train actors killed mid-run: test_kill_resume.py.)"""

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.rollout.default import generate_rollout
from slime.rollout.reward import REWARD_ERROR_KEY, count_reward_errors
from slime.types import Status
from slime_testkit.hf_engine import HFEngine
from slime_testkit.json_server import JSONServer

HERE = Path(__file__).parent
SCORE = 0.75  # what the reward server answers: a sample left at 0 was not scored by it


class RewardServer(JSONServer):
    """A reward server whose behaviour the test switches: "ok", "error" (HTTP 503) or "hang"."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.errors_left = 0  # in "ok" mode: answer 503 to this many requests first
        self.requests = 0
        self.hang_s = 5.0

    @property
    def url(self) -> str:
        return super().url + "/reward"

    def answer(self, path: str, payload: object, headers) -> tuple[int, object]:
        with self.lock:
            self.requests += 1
        if self.mode == "hang":
            time.sleep(self.hang_s)
        if self.mode == "error" or self.errors_left > 0:
            with self.lock:
                self.errors_left = max(0, self.errors_left - 1)
            return 503, {"error": "unavailable"}
        return 200, SCORE


@pytest.fixture
def reward_server():
    with RewardServer() as server:
        yield server


@pytest.fixture
def tiny(tiny_run_files) -> tuple[Path, Path]:
    return tiny_run_files


def test_reward_server_that_errors_hangs_and_recovers(tiny, reward_server, scoreboard):
    """Through the remote reward plugin (`--rm-type remote_rm`), in the default rollout function with real generation.
    Documented behaviour (slime/rollout/reward.py, slime_rewards_remote): transient errors are retried; a reward that
    cannot be had in time fails only its sample (FAILED, the error kept in its metadata, counted as
    rollout/reward_errors), never a silent 0 and never a hang; the next rollout scores normally again."""
    model, data = tiny
    args = parse_args(
        [
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "3",
            "--rm-type", "remote_rm", "--rm-url", reward_server.url, "--rm-timeout", "0.5",
            "--rm-max-retries", "3", "--rm-retry-backoff", "0.05",
        ]
    )  # fmt: skip
    source = RolloutDataSource(args)
    engine = HFEngine.from_model(model, seed=1)

    def rollout(rollout_id: int) -> tuple[list, float]:
        start = time.monotonic()
        samples = generate_rollout(args, rollout_id, source, engine).samples
        return samples, time.monotonic() - start

    # 1. Errors, then recovers within the retries: every sample gets the server's score.
    reward_server.errors_left = 3
    samples, _ = rollout(0)
    errors_survived = [s.reward for s in samples] == [SCORE] * 4 and count_reward_errors(samples) == 0
    scoreboard.fault("reward server: 3 errors, then answers", survived=errors_survived)
    assert errors_survived, [(s.status, s.reward, s.metadata) for s in samples]
    assert reward_server.requests == 4 + 3

    # 2. Hangs: each request times out (0.5 s), is retried 3 times, then its sample fails. Bounded, not a hang.
    reward_server.mode = "hang"
    samples, seconds = rollout(1)
    failed = [s for s in samples if s.status is Status.FAILED]
    hang_survived = len(failed) == 4 and count_reward_errors(samples) == 4 and seconds < 60
    scoreboard.fault("reward server hangs", survived=hang_survived)
    assert hang_survived, ([(s.status, s.metadata) for s in samples], seconds)
    assert all("no answer within 0.5 s" in s.metadata[REWARD_ERROR_KEY] for s in failed)

    # 3. Answers errors only: the retries run out, the samples fail with the server's answer in the error.
    reward_server.mode = "error"
    samples, _ = rollout(2)
    error_survived = count_reward_errors(samples) == 4
    scoreboard.fault("reward server answers 503", survived=error_survived)
    assert error_survived
    assert all("HTTP 503" in s.metadata[REWARD_ERROR_KEY] for s in samples)

    # 4. Recovers: the next rollout is scored normally.
    reward_server.mode = "ok"
    samples, _ = rollout(3)
    assert [s.reward for s in samples] == [SCORE] * 4 and count_reward_errors(samples) == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket closes


def test_wandb_unreachable_falls_back_to_offline_and_metrics_continue(tmp_path, caplog, scoreboard):
    """W&B online with nothing listening at its address: the run logs a one-line warning, writes W&B offline (to
    `wandb sync` later) and metrics.jsonl carries on, within --wandb-init-timeout; no hang, no crash."""
    from slime.metrics import finish_metrics, init_metrics, log_train_step

    args = parse_args(
        [
            "--use-wandb", "--wandb-mode", "online", "--wandb-host", f"http://127.0.0.1:{closed_port()}",
            "--wandb-key", "k" * 40, "--wandb-project", "reliability", "--wandb-init-timeout", "5",
            "--output-dir", str(tmp_path), "--actor-num-gpus-per-node", "1", "--rollout-batch-size", "1",
        ]
    )  # fmt: skip
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        init_metrics(args)
        log_train_step(args, 0, 0, {"loss": 1.5})
        finish_metrics()
    seconds = time.monotonic() - start
    warnings = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    survived = rows == [{"train/step": 0, "train/loss": 1.5}] and len(warnings) == 1 and seconds < 60
    scoreboard.fault("W&B unreachable", survived=survived)
    assert survived, (rows, warnings, seconds)
    assert "logging OFFLINE" in warnings[0] and args.wandb_mode == "offline"
    assert list(tmp_path.rglob("offline-run-*/*.wandb"))


@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, scoreboard):
    """Megatron-core on CPU saves rollout 0, then rollout 1 on a full disk (RLIMIT_FSIZE, see disk_full_worker.py):
    the save fails with one clear error (CheckpointSaveError), the pointer still names rollout 0, whose weights a fresh trainer loads
    exactly; once there is room, rollout 1 saves over what the failed save left."""
    result = subprocess.run(
        [sys.executable, str(HERE / "disk_full_worker.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
    outcome = json.loads(lines[0].removeprefix("RESULT "))
    survived = (
        outcome["error"] is not None
        and outcome["pointer_after_failure"] == "0"
        and outcome["resumed_start"] == 1
        and outcome["resumed_weights_equal_saved"]
    )
    scoreboard.fault("disk full while saving (Megatron)", survived=survived)
    assert survived, outcome
    assert outcome["error"].startswith("CheckpointSaveError: saving iter_0000001 under"), outcome["error"]
    assert "disk full?" in outcome["error"] and "still names the previous checkpoint" in outcome["error"]
    assert "iter_0000001" not in outcome["entries_after_failure"]
    assert outcome["pointer_after_retry"] == "1" and "iter_0000001" in outcome["entries_after_retry"]
    assert not [name for name in outcome["entries_after_retry"] if name.endswith(".tmp")]


def test_data_position_that_cannot_be_written_leaves_the_previous_checkpoint_current(
    ray_runtime, tiny, tmp_path, scoreboard
):
    """Saving rollout 1 fails while writing its data position (here: a directory squats on the file's temporary
    name). The pointer must still name rollout 0, whose data position exists, so `--load` resumes; it must not name a
    checkpoint without its data position (the loop once moved the pointer before writing the position)."""
    from slime.loop import train

    model, data = tiny
    ckpt = tmp_path / "ckpt"
    (ckpt / "rollout" / "data_source_1.json.tmp").mkdir(parents=True)
    args = parse_args(
        [
            "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "3",
            "--rm-type", "random", "--update-weight-transport", "disk", "--output-dir", str(tmp_path / "out"),
            "--num-rollout", "3", "--save", str(ckpt), "--save-interval", "1",
        ]
    )  # fmt: skip
    with pytest.raises(Exception, match="data_source_1.json"):
        train(args)
    latest = (ckpt / "latest_checkpointed_iteration.txt").read_text().strip()
    survived = latest == "0" and (ckpt / "rollout" / "data_source_0.json").is_file()
    scoreboard.fault("data position unwritable while saving", survived=survived)
    assert survived, latest
