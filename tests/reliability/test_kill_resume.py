"""Kill and resume: kill -9 the driver, a train actor or a rollout engine of a real `slime train` process, resume with
`--load`, and check that no prompt is lost or trained twice, rollout ids continue and checkpoints are whole.

How prompts are counted is explained in `chain.py`: a rollout id's prompts count once, from the segment that
checkpointed it; the run's sequence must equal the uninterrupted run's, position by position.

Two chains (a start of the real stack costs ~1-2 min on a shared 2-core machine):
- ten driver kills at seeded pseudo-random points, with core's small HF train backend and HF engine (real Ray, real
  `slime train` processes, real files; not Megatron or SGLang);
- the real stack (Ray + Megatron-core on CPU + SGLang on CPU): an engine killed mid-run under
  `--use-fault-tolerance` (the run goes on), the driver killed, a train actor killed (a clear error, no hang),
  an engine killed without fault tolerance (a clear error, no hang), then a resume that finishes the run. Its four
  `slime train` runs also carry secrets (a `--wandb-key` flag, a token in the environment), and the test checks that
  neither reaches any file they wrote, Ray's session logs included, or their console output: the real-stack half of
  `test_security.py`'s secrets check, folded in here to save four starts of the stack. Its four starts take 4-8
  minutes, more than CI's budget allows beside the rest of the suite: it is a long test (SLIME_LONG_TESTS=1), run by
  hand before a stop (docs/status.md records the last pass).

The reliability table's rows (conftest.py) say survived only once every assertion about the fault passed: that the
faulted run ended as documented with no process left over, and that the resume after it trained exactly the
uninterrupted run's prompts (those of the segment it is charged with) with its rollout ids continuing.
"""

import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

from slime_sglang.processes import stat_fields

sys.path.insert(0, str(Path(__file__).parent))  # chain.py (pytest runs with importlib mode)
from chain import Chain, Segment, command_line, data_lost, slime_env, uninterrupted_prompts  # noqa: E402

pytestmark = pytest.mark.slow

BATCH = 2
WANDB_KEY = "wandbkey-0123456789abcdef0123456789abcdef"  # as in test_security.py (W&B keys are 40 characters)
RM_TOKEN = "rm-token-fedcba9876543210"


@pytest.fixture
def tiny(tiny_run_files) -> tuple[Path, Path]:
    return tiny_run_files


def common_argv(model: Path, data: Path) -> list[str]:
    return [
        "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
        "--rollout-shuffle", "--rollout-batch-size", str(BATCH), "--n-samples-per-prompt", "2",
        "--rollout-max-response-len", "4", "--custom-rm-path", "slime_testkit.prompt_log.record_prompt",
        "--update-weight-transport", "disk", "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
    ]  # fmt: skip


def hf_backends_argv(model: Path, data: Path) -> list[str]:
    """The fault chains' flags with the HF test backends (no engine or Megatron start: a rollout takes ~0.05 s)."""
    return [
        *common_argv(model, data),
        "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
        "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
    ]  # fmt: skip


def test_driver_killed_at_ten_random_points_resumes_without_losing_a_prompt(
    ray_runtime, tiny, tmp_path, chains, scoreboard
):
    """Kill point: the segment's k-th metrics line (k in 1..6: a rollout generated, trained, or saved and its weights
    synced; the second rollout of the segment), then a random 0-0.3 s more. A rollout takes ~0.05 s with these
    backends, so kills land inside generation, training, saving (between the data position, the checkpoint and its
    pointer) and weight sync alike."""
    model, data = tiny
    num_rollout = 60  # room for ten kills on a fast machine (~3 rollouts per segment seen); the last trains the rest
    argv = hf_backends_argv(model, data)
    chain = Chain(tmp_path, argv, num_rollout, BATCH)
    chains.append(chain)
    # Drivers join the test's Ray runtime (RAY_ADDRESS, as on a cluster): a local Ray start per driver would cost
    # more than the rest of the segment on this machine. The real-stack chain kills a driver that started its own.
    env = slime_env(RAY_ADDRESS=ray_runtime.get_runtime_context().gcs_address)
    rng = random.Random(9)
    kills = []  # kill n ends segment n; segment n + 1 is the resume charged with it (the first also with segment 0)
    for number in range(10):
        segment = chain.start(env=env)
        k, delay = rng.randint(1, 6), rng.uniform(0.0, 0.3)
        segment.wait_for(lambda: len(segment.metric_lines()) >= k, 300, f"metrics line {k}")  # noqa: B023
        time.sleep(delay)
        assert segment.process.poll() is None, "the run finished before ten kills: raise num_rollout"
        kills.append(scoreboard.fault(f"driver kill -9 #{number + 1} (HF backends)"))
        segment.kill()  # asserts that no process of the segment is left
        chain.check_checkpoint()  # asserts that the checkpoint the pointer names is whole
    final = chain.start(env=env)
    assert final.wait_end(600) == 0, final.log()[-3000:]

    expected = uninterrupted_prompts([*argv, "--num-rollout", str(num_rollout)], num_rollout, BATCH)
    checkpoints = sorted(p.name for p in chain.ckpt.glob("iter_*"))
    every_checkpoint = checkpoints == [f"iter_{r:07d}" for r in range(num_rollout)]
    settle(chain, expected, [(row, [0, 1] if n == 0 else [n + 1]) for n, row in enumerate(kills)], every_checkpoint)
    assert chain.trained_prompts() == expected
    chain.rollout_ids_continue()
    assert every_checkpoint, checkpoints


def test_sigterm_stops_the_run_with_ray_and_the_resume_loses_no_prompt(tiny, tmp_path, chains, scoreboard):
    """SIGTERM to the driver alone (as `kill`, a scheduler or `docker stop` sends it), on a run that started its own
    Ray runtime: the run stops as Ctrl-C stops it (exit 143, one line), and nothing it started is left, Ray's own
    processes included (before, Ray's dashboard and runtime-env agents outlived a SIGTERM). The resume goes on."""
    model, data = tiny
    num_rollout = 4
    argv = hf_backends_argv(model, data)
    chain = Chain(tmp_path, argv, num_rollout, BATCH)
    chains.append(chain)
    env = {key: value for key, value in slime_env().items() if key != "RAY_ADDRESS"}  # a Ray runtime of its own
    segment = chain.start(env=env)
    segment.wait_for(lambda: len(segment.rollouts_logged()) >= 1, 300, "rollout 0")
    tree = segment.tree()
    assert any("raylet" in command_line(pid) for pid in tree), "the run did not start its own Ray runtime"
    row = scoreboard.fault("driver SIGTERM (HF backends, own Ray runtime)")
    segment.process.send_signal(signal.SIGTERM)
    assert segment.wait_end(120) == 143, segment.log()[-3000:]
    assert segment.log().strip().splitlines()[-1] == "slime train: stopped by SIGTERM"
    segment.assert_gone(tree)
    final = chain.start(env=env)
    assert final.wait_end(600) == 0, final.log()[-3000:]
    expected = uninterrupted_prompts([*argv, "--num-rollout", str(num_rollout)], num_rollout, BATCH)
    settle(chain, expected, [(row, [0, 1])])
    assert chain.trained_prompts() == expected


def lost_by_segment(chain: Chain, expected: list[str]) -> list[int]:
    """For each segment, the prompts lost or trained twice among those it owns (chain.py's accounting)."""
    trained = chain.trained_prompts()
    starts = [segment.start_rollout for segment in chain.segments] + [chain.num_rollout]
    return [
        data_lost(trained[begin * BATCH : end * BATCH], expected[begin * BATCH : end * BATCH])
        for begin, end in zip(starts, starts[1:], strict=False)
    ]


def ids_continue(segment: Segment) -> bool:
    logged = segment.rollouts_logged()
    return logged == list(range(segment.start_rollout, segment.start_rollout + len(logged)))


def settle(chain: Chain, expected: list[str], charged: list, run_whole: bool = True) -> None:
    """Once the chain's last segment has finished: each fault row in ``charged`` (row, segment numbers) takes the
    prompts lost or trained twice in its segments, and says survived when those segments trained the uninterrupted
    run's prompts with their rollout ids continuing and ``run_whole`` (the run's own end checks) holds. A row's own
    assertions (a clear error, no process left) come before its injection's next step, so they passed already."""
    lost = lost_by_segment(chain, expected)
    for row, segments in charged:
        row.data_lost = sum(lost[s] for s in segments)
        row.survived = run_whole and all(lost[s] == 0 and ids_continue(chain.segments[s]) for s in segments)


def engine_server(segment) -> int | None:
    """The SGLang server process the segment's engine actor started (its main process), once there is one."""
    servers = [
        pid for pid in segment.pids("slime_sglang.cpu_server") if "SGLangServerActor" in command_line(parent(pid))
    ]
    return servers[0] if servers else None


def parent(pid: int) -> int:
    return int(stat_fields(pid)[1])


def ended_with_clear_error(segment, fault_at: float, timeout: float) -> tuple[bool, str]:
    """The driver exits non-zero within ``timeout`` s of the fault; its last line names what happened."""
    code = segment.wait_end(timeout)
    last = segment.log().strip().splitlines()[-1]
    return code != 0 and time.monotonic() - fault_at < timeout, last


@pytest.fixture
def chains() -> list[Chain]:
    """The test's chains: at teardown, also after a failure or a pytest timeout, a segment still running is killed
    (its process group; its SGLang servers end with it), so a failed test leaves no run behind."""
    made: list[Chain] = []
    yield made
    for chain in made:
        for segment in chain.segments:
            if segment.process.poll() is None:
                os.killpg(segment.process.pid, signal.SIGKILL)
                segment.process.wait()


@pytest.fixture
def short_temp_dir():
    """A fresh temporary directory with a short path (Ray's socket paths below it must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="slime-kr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.long
@pytest.mark.timeout(2400)  # ~4 min on a quiet 2-core machine; each wait below has its own, clearer, limit
def test_real_stack_engine_actor_and_driver_kills(tiny, tmp_path, short_temp_dir, chains, scoreboard):
    """Ray + Megatron-core (CPU) + SGLang (CPU), `slime train` processes that start their own Ray (so the driver's
    process group holds Ray's own processes; SGLang servers run in sessions of their own below their engine actors).

    Segment 0 (--use-fault-tolerance): the engine's server is killed after rollout 0; the health monitor restarts it
    and the run trains the next rollout; then the driver is killed -9. Segment 1: the engine is killed without fault
    tolerance: the driver ends with an error naming the engine within 5 min. Segment 2: a train actor is killed: the
    driver ends with an error saying it died within 5 min. Segment 3 resumes and finishes. No process outlives any
    segment, and the prompts trained are the uninterrupted run's.

    Secrets (the real-stack `slime train` half of test_security.py's check, folded in here to save starts): every
    segment gets `--wandb-key` and a reward token in its environment, the last one also W&B (offline) and
    TensorBoard. Neither secret may appear in any file the four runs wrote (output directories, checkpoints, the
    weights sent to the engines, SGLang's logs, W&B's and Ray's own directories: W&B's config/cache/data and TMPDIR
    point into the test's directories, and Ray's session directories with their logs are below RAY_TMPDIR) nor in
    their console output (each driver's stdout and stderr, with its actors' output, is its segment's driver.log)."""
    model, data = tiny
    # Segment 0 checkpoints at most rollouts 0-1, segments 1 and 2 at most one more each: the last trains at least one.
    num_rollout = 5
    argv = [
        *common_argv(model, data),
        "--train-backend", "megatron", "--rollout-backend", "sglang", "--sglang-device", "cpu",
        "--sglang-server-start-timeout", "600", "--rollout-health-check-interval", "2",
        "--rollout-health-check-timeout", "60", "--wandb-key", WANDB_KEY,
    ]  # fmt: skip
    chain = Chain(tmp_path, argv, num_rollout, BATCH)
    chains.append(chain)
    wandb_home = tmp_path / "wandb-home"
    env = slime_env(
        SLIME_RM_TOKEN=RM_TOKEN,
        RAY_TMPDIR=str(short_temp_dir),  # each driver's Ray session: <RAY_TMPDIR>/ray/session_*
        TMPDIR=str(short_temp_dir),
        WANDB_CONFIG_DIR=str(wandb_home / "config"),
        WANDB_CACHE_DIR=str(wandb_home / "cache"),
        WANDB_DATA_DIR=str(wandb_home / "data"),
    )

    segment = chain.start("--use-fault-tolerance", "--rollout-health-check-first-wait", "0", env=env)
    segment.wait_for(lambda: len(segment.rollouts_logged()) >= 1 and engine_server(segment), 900, "rollout 0")
    killed = engine_server(segment)
    restarted_engine = scoreboard.fault("engine killed, --use-fault-tolerance (Megatron+SGLang)")
    os.kill(killed, signal.SIGKILL)
    after = len(segment.rollouts_logged())
    segment.wait_for(lambda: len(segment.rollouts_logged()) > after, 900, "a rollout after the engine died")
    restarted = engine_server(segment)
    assert restarted not in (None, killed), (killed, restarted)
    driver_kill = scoreboard.fault("driver kill -9 (Megatron+SGLang)")
    segment.kill()  # asserts that no process of the segment is left
    chain.check_checkpoint()

    segment = chain.start(env=env)
    segment.wait_for(lambda: len(segment.metric_lines()) >= 1 and engine_server(segment), 900, "a rollout")
    tree = segment.tree()
    engine_kill = scoreboard.fault("engine killed, no fault tolerance: clear error (Megatron+SGLang)")
    os.kill(engine_server(segment), signal.SIGKILL)
    clear, last = ended_with_clear_error(segment, time.monotonic(), 300)
    segment.assert_gone(tree)
    assert clear and "engine" in last.lower(), last

    segment = chain.start(env=env)
    segment.wait_for(lambda: len(segment.metric_lines()) >= 1 and segment.pids("ray::TrainActor"), 900, "a rollout")
    tree = segment.tree()
    actor_kill = scoreboard.fault("train actor killed: clear error (Megatron+SGLang)")
    os.kill(segment.pids("ray::TrainActor")[0], signal.SIGKILL)
    clear, last = ended_with_clear_error(segment, time.monotonic(), 300)
    segment.assert_gone(tree)
    assert clear and "died" in last.lower(), last

    final = chain.start("--use-wandb", "--wandb-mode", "offline", "--use-tensorboard", env=env)
    assert final.wait_end(900) == 0, final.log()[-3000:]
    assert final.rollouts_logged(), "the last segment trained nothing: raise num_rollout"
    expected = uninterrupted_prompts([*argv, "--num-rollout", str(num_rollout)], num_rollout, BATCH)
    # Each fault is charged with the segment that shows whether the run survived it: the engine restart with the
    # segment it happened in, each other fault with the resume after it.
    charged = [(restarted_engine, [0]), (driver_kill, [1]), (engine_kill, [2]), (actor_kill, [3])]
    settle(chain, expected, charged)
    assert chain.trained_prompts() == expected
    chain.rollout_ids_continue()

    # Secrets: the runs had them (W&B recorded the key's flag, redacted) and wrote them nowhere.
    wandb_files = list((final.out / "wandb").rglob("*.wandb"))
    assert len(wandb_files) == 1 and b"<redacted>" in wandb_files[0].read_bytes()
    assert list((final.out / "tensorboard").rglob("*tfevents*"))
    sessions = sorted((short_temp_dir / "ray").glob("session_2*"))
    assert len(sessions) == 4 and all(list((s / "logs").glob("worker-*.out")) for s in sessions), sessions
    assert all((s.out / "sglang" / "engine_0.log").is_file() for s in chain.segments)
    written = [path for root in (tmp_path, short_temp_dir) for path in root.rglob("*") if path.is_file()]
    for secret in (WANDB_KEY, RM_TOKEN):
        leaks = [str(path) for path in written if secret.encode() in path.read_bytes()]
        assert leaks == [], f"{secret} written to {leaks}"
