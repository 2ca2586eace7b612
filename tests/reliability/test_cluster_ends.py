"""How a run on a Ray cluster ends when the cluster fails under it: `slime train` on a two-node cluster
(two_node_cluster.py) with its train rank and SGLang engine on node B (the only node with GPUs; the head has none),
weights through shared memory (both on B). After two rollouts:

- node B is killed without warning (a machine lost): the run ends within a minute with one line naming the node;
- the driver alone is killed -9: Ray ends the job's actors, and their engine and router end with them;
- every process of the cluster is killed -9 (what `ray stop --force` does on each machine; the real command would
  also kill the test session's own Ray runtime): the driver ends, and so does every SGLang, router and watcher
  process.

Each time, no process of the run is left and /dev/shm holds nothing it created (but for a multiprocessing semaphore,
a known gap: see ``Run.assert_nothing_left``). Each case starts a cluster and an engine (1.5-3 min): CI runs the node
loss; the other two are long tests (SLIME_LONG_TESTS=1, run by hand before a stop)."""

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
REQUIRED = ("ray::TrainActor", "slime_sglang.cpu_server", "slime_sglang.parent_watch")
# The engine's scheduler: SGLang titles it with setproctitle (comm keeps 15 characters), which once left it, and the
# detokenizer, as the bare child it starts as: a fork of the CPU server, with the server's command line.
SCHEDULER = ("sglang::schedul", "slime_sglang.cpu_server")


def _named(pid: int) -> str:
    """The kernel's name for the process in brackets, then its command line: SGLang names its scheduler with
    setproctitle, which sets both; the bracket still names it if the command line was not rewritten."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = ""
    return f"[{name}] {command_line(pid)}"


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


class Run:
    """A `slime train` on the cluster (its own session): entered once it has trained two rollouts, with its processes
    recorded; its driver's group is killed on exit if it still runs."""

    def __init__(self, helper: subprocess.Popen, address: str, model: Path, data: Path, workdir: Path) -> None:
        self.helper, self.address = helper, address
        self.out, self.log = workdir / "out", workdir / "driver.log"
        self.command = [
            sys.executable, "-m", "slime.cli", "train",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
            "--rm-type", "math", "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--num-rollout", "1000",
            "--train-backend", "slime_testkit.hf_trainer.HFTrainer", "--rollout-backend", "sglang",
            "--sglang-device", "cpu", "--sglang-server-start-timeout", "600", "--output-dir", str(self.out),
        ]  # fmt: skip

    def __enter__(self) -> "Run":
        self.shm_before = set(os.listdir("/dev/shm"))
        with self.log.open("w") as sink:
            self.driver = subprocess.Popen(
                self.command,
                env=slime_env(RAY_ADDRESS=self.address),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            metrics, deadline = self.out / "metrics.jsonl", time.monotonic() + 600
            while not (metrics.exists() and metrics.read_text().count('"rollout/raw_reward"') >= 2):
                assert self.driver.poll() is None, self.output()[-3000:]
                assert time.monotonic() < deadline, "no two rollouts within 600 s"
                time.sleep(0.5)
            self.processes = self._processes()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _processes(self) -> dict[int, str]:
        """The run's processes (its actors, engine server, router and their watchers), wherever Ray started them.

        Read until the train actor, the engine's server with its scheduler and a watcher are all seen (up to 60 s):
        one clean-clone CI run's single look missed the scheduler of an engine that had just served two rollouts (it ran,
        untitled: see SCHEDULER)."""
        deadline = time.monotonic() + 60
        while True:
            every = {pid: _named(pid) for pid in descendants(self.helper.pid) | descendants(self.driver.pid)}
            found = {pid: line for pid, line in every.items() if any(name in line for name in RUN_PROCESSES)}
            servers = [pid for pid, line in found.items() if "slime_sglang.cpu_server" in line]
            below = {pid: every.get(pid) or _named(pid) for server in servers for pid in descendants(server) - {server}}
            schedulers = {pid: line for pid, line in below.items() if any(name in line for name in SCHEDULER)}
            found |= schedulers
            missing = [name for name in REQUIRED if not any(name in line for line in found.values())]
            if not schedulers:
                missing.append("the engine's scheduler")
            if not missing:
                return found
            if time.monotonic() > deadline:
                listing = "\n".join(f"  {pid} {line[:150]}" for pid, line in sorted(every.items()))
                engine_log = self.out / "sglang" / "engine_0.log"
                engine_tail = engine_log.read_text(errors="replace")[-3000:] if engine_log.exists() else "(no log)"
                raise AssertionError(
                    f"no {missing} among the cluster's processes:\n{listing}\nengine log ends:\n{engine_tail}"
                )
            time.sleep(1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.driver.poll() is None:
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait()

    def assert_nothing_left(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in self.processes):
            time.sleep(0.5)
        left_running = {pid: line[:120] for pid, line in self.processes.items() if pid_alive(pid)}
        assert not left_running, f"processes outlived the run: {left_running}"
        # The weight buffer's watcher (slime_sglang.shm_watch) polls each second, so its removal trails the train
        # actor's end by up to that much (a clean-clone CI run saw the buffer still there at the first look).
        deadline = time.monotonic() + 10
        while (left := self._shm_left()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"the run left {sorted(left)} in /dev/shm"

    def _shm_left(self) -> set[str]:
        # Known gap: a multiprocessing semaphore (sem.mp-*) may stay. Seen after the cluster-wide kill (made before the
        # kill, mapped by no live process then) and once after the node loss in a clean-clone CI run; its owner is not
        # identified.
        return {name for name in set(os.listdir("/dev/shm")) - self.shm_before if not name.startswith("sem.mp-")}


def test_a_node_lost_mid_run_ends_it_with_one_line(cluster, tiny_run_files, tmp_path, scoreboard):
    helper, address = cluster
    with Run(helper, address, *tiny_run_files, tmp_path) as run:
        fault = scoreboard.fault("node lost mid-run: one clear error, no process left")
        helper.stdin.write("remove\n")
        helper.stdin.flush()
        assert helper.stdout.readline().strip() == "removed"
        lost_at = time.monotonic()
        code = run.driver.wait(timeout=120)
        took = time.monotonic() - lost_at
    output = run.output()
    last = output.strip().splitlines()[-1]
    assert code == 2 and took < 60, (code, took, output[-3000:])
    assert last.startswith("slime train: error: Ray lost node ") and "during the run" in last, last
    assert "Traceback" not in output, output[-3000:]
    run.assert_nothing_left()
    fault.survived = True


@pytest.mark.long
def test_the_driver_killed_alone_takes_the_run_with_it(cluster, tiny_run_files, tmp_path, scoreboard):
    with Run(*cluster, *tiny_run_files, tmp_path) as run:
        fault = scoreboard.fault("driver process alone killed -9 on a cluster: no process left")
        os.kill(run.driver.pid, signal.SIGKILL)  # not its process group: Ray has to end what it started
        run.driver.wait(timeout=30)
        run.assert_nothing_left()
    fault.survived = True


@pytest.mark.long
def test_the_cluster_killed_under_a_run_leaves_no_process(cluster, tiny_run_files, tmp_path, scoreboard):
    helper, _ = cluster
    with Run(*cluster, *tiny_run_files, tmp_path) as run:
        fault = scoreboard.fault("every Ray process killed -9 under a run (ray stop --force): no process left")
        for pid in descendants(helper.pid) - {helper.pid}:
            line = command_line(pid)
            if line.startswith("ray::") or "/ray/" in line:  # workers, GCS, raylets, Ray's agents: Ray's own
                os.kill(pid, signal.SIGKILL)
        code = run.driver.wait(timeout=180)  # Ray's driver gives up on a GCS that is gone
        assert code != 0, run.output()[-3000:]
        run.assert_nothing_left()
    fault.survived = True
