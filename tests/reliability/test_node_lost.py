"""A node lost mid-run: `slime train` on a two-node Ray cluster (two_node_cluster.py) with its train rank and SGLang
engine on node B (the only node with GPUs; the head has none), node B killed after two rollouts. The run must end
within a minute with one line naming the lost node (no traceback), and no process of the run may be left: not the
actors, not the SGLang server's processes, not the router."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slime_sglang.processes import pid_alive

sys.path.insert(0, str(Path(__file__).parent))  # chain.py (pytest runs with importlib mode)
from chain import command_line, descendants, slime_env  # noqa: E402

pytestmark = pytest.mark.slow

RUN_PROCESSES = ("ray::TrainActor", "ray::RolloutManager", "ray::SGLangServerActor", "sglang", "slime_sglang.")


@pytest.fixture
def cluster():
    helper = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "two_node_cluster.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield helper, helper.stdout.readline().strip()
    finally:
        helper.stdin.close()
        try:
            helper.wait(timeout=120)
        except subprocess.TimeoutExpired:
            helper.kill()


def test_a_node_lost_mid_run_ends_it_with_one_line_and_no_process_left(cluster, tiny_run_files, tmp_path, scoreboard):
    helper, address = cluster
    model, data = tiny_run_files
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "slime.cli", "train",
        "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
        "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
        "--rm-type", "math", "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--num-rollout", "1000",
        "--train-backend", "slime_testkit.hf_trainer.HFTrainer", "--rollout-backend", "sglang",
        "--sglang-device", "cpu", "--sglang-server-start-timeout", "600", "--update-weight-transport", "disk",
        "--output-dir", str(out),
    ]  # fmt: skip
    log = tmp_path / "driver.log"
    with log.open("w") as sink:
        driver = subprocess.Popen(
            command, env=slime_env(RAY_ADDRESS=address), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 600
        while not (metrics.exists() and metrics.read_text().count('"rollout/raw_reward"') >= 2):
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no two rollouts within 600 s"
            time.sleep(0.5)
        run = {pid: command_line(pid) for pid in descendants(helper.pid) | descendants(driver.pid)}
        run = {pid: line for pid, line in run.items() if any(name in line for name in RUN_PROCESSES)}
        assert any("ray::TrainActor" in line for line in run.values()), run
        assert any("sglang::scheduler" in line for line in run.values()), run

        fault = scoreboard.fault("node lost mid-run: one clear error, no process left")
        helper.stdin.write("remove\n")
        helper.stdin.flush()
        assert helper.stdout.readline().strip() == "removed"
        lost_at = time.monotonic()
        code = driver.wait(timeout=120)
        took = time.monotonic() - lost_at
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

    output = log.read_text(errors="replace")
    last = output.strip().splitlines()[-1]
    assert code == 2 and took < 60, (code, took, output[-3000:])
    assert last.startswith("slime train: error: Ray lost node ") and "during the run" in last, last
    assert "Traceback" not in output, output[-3000:]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in run):
        time.sleep(0.5)
    assert not {pid: line[:120] for pid, line in run.items() if pid_alive(pid)}, "processes of the run outlived it"
    fault.survived = True
