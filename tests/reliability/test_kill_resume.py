"""Kill and resume: kill -9 the driver, a train actor or a rollout engine of a real `slime train` process, resume with
`--load`, and check that no prompt is lost or trained twice, rollout ids continue and checkpoints are whole.

How prompts are counted is explained in `chain.py`: a rollout id's prompts count once, from the segment that
checkpointed it; the run's sequence must equal the uninterrupted run's, position by position.

Two chains, for time (a start of the real stack costs ~1-2 min on a shared 2-core machine):
- ten driver kills at seeded pseudo-random points, with core's small HF train backend and HF engine (real Ray, real
  `slime train` processes, real files; not Megatron or SGLang);
- the real stack (Ray + Megatron-core on CPU + SGLang on CPU): an engine killed mid-run under
  `--use-fault-tolerance` (the run goes on), the driver killed, a train actor killed (a clear error, no hang),
  an engine killed without fault tolerance (a clear error, no hang), then a resume that finishes the run.
"""

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from slime_sglang.processes import stat_fields

sys.path.insert(0, str(Path(__file__).parent))  # chain.py (pytest runs with importlib mode)
from chain import Chain, command_line, data_lost, slime_env, uninterrupted_prompts  # noqa: E402

pytestmark = pytest.mark.slow

BATCH = 2


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


def test_driver_killed_at_ten_random_points_resumes_without_losing_a_prompt(ray_runtime, tiny, tmp_path, scoreboard):
    """Kill point: the segment's k-th metrics line (k in 1..6: a rollout generated, trained, or saved and its weights
    synced; the second rollout of the segment), then a random 0-0.3 s more. A rollout takes ~0.05 s with these
    backends, so kills land inside generation, training, saving (between the data position, the checkpoint and its
    pointer) and weight sync alike."""
    model, data = tiny
    num_rollout = 60  # room for ten kills on a fast machine (~3 rollouts per segment seen); the last trains the rest
    argv = [
        *common_argv(model, data),
        "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
        "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
    ]  # fmt: skip
    chain = Chain(tmp_path, argv, num_rollout, BATCH)
    # Drivers join the test's Ray runtime (RAY_ADDRESS, as on a cluster): a local Ray start per driver would cost
    # more than the rest of the segment on this machine. The real-stack chain kills a driver that started its own.
    env = slime_env(RAY_ADDRESS=ray_runtime.get_runtime_context().gcs_address)
    rng = random.Random(9)
    for _ in range(10):
        segment = chain.start(env=env)
        k, delay = rng.randint(1, 6), rng.uniform(0.0, 0.3)
        segment.wait_for(lambda: len(segment.metric_lines()) >= k, 300, f"metrics line {k}")  # noqa: B023
        time.sleep(delay)
        assert segment.process.poll() is None, "the run finished before ten kills: raise num_rollout"
        segment.kill()
        chain.check_checkpoint()
    final = chain.start(env=env)
    assert final.wait_end(600) == 0, final.log()[-3000:]

    trained = chain.trained_prompts()
    expected = uninterrupted_prompts([*argv, "--num-rollout", str(num_rollout)], num_rollout, BATCH)
    lost = data_lost(trained, expected)
    for number in range(10):
        scoreboard.fault(
            f"driver kill -9 #{number + 1} (HF backends)", survived=True, data_lost=lost if number == 0 else 0
        )
    assert trained == expected
    chain.rollout_ids_continue()
    assert sorted(p.name for p in chain.ckpt.glob("iter_*")) == [f"iter_{r:07d}" for r in range(num_rollout)]


def engine_server(segment) -> int | None:
    """The SGLang server process the segment's rollout manager started (its main process), once there is one."""
    servers = [pid for pid in segment.pids("slime_sglang.cpu_server") if "RolloutManager" in command_line(parent(pid))]
    return servers[0] if servers else None


def parent(pid: int) -> int:
    return int(stat_fields(pid)[1])


def ended_with_clear_error(segment, fault_at: float, timeout: float) -> tuple[bool, str]:
    """The driver exits non-zero within ``timeout`` s of the fault; its last line names what happened."""
    code = segment.wait_end(timeout)
    last = segment.log().strip().splitlines()[-1]
    return code != 0 and time.monotonic() - fault_at < timeout, last


@pytest.mark.skipif(
    not os.environ.get("SLIME_LONG_TESTS"),
    reason="four starts of Ray+Megatron+SGLang (several minutes) do not fit the CI budget; SLIME_LONG_TESTS=1 runs it",
)
def test_real_stack_engine_actor_and_driver_kills(tiny, tmp_path, scoreboard):
    """Ray + Megatron-core (CPU) + SGLang (CPU), `slime train` processes that start their own Ray (so the driver's
    process group holds Ray's own processes; SGLang servers run in sessions of their own below the rollout manager).

    Segment 0 (--use-fault-tolerance): the engine's server is killed after rollout 0; the health monitor restarts it
    and the run trains the next rollout; then the driver is killed -9. Segment 1: the engine is killed without fault
    tolerance: the driver ends with an error within 5 min. Segment 2: a train actor is killed: the driver ends with an
    error within 5 min. Segment 3 resumes and finishes. No process outlives any segment, and the prompts trained are
    the uninterrupted run's."""
    model, data = tiny
    num_rollout = 5
    argv = [
        *common_argv(model, data),
        "--train-backend", "megatron", "--rollout-backend", "sglang", "--sglang-device", "cpu",
        "--sglang-server-start-timeout", "600", "--rollout-health-check-interval", "2",
        "--rollout-health-check-timeout", "60",
    ]  # fmt: skip
    chain = Chain(tmp_path, argv, num_rollout, BATCH)

    segment = chain.start("--use-fault-tolerance", "--rollout-health-check-first-wait", "0")
    segment.wait_for(lambda: len(segment.rollouts_logged()) >= 1 and engine_server(segment), 900, "rollout 0")
    killed = engine_server(segment)
    os.kill(killed, signal.SIGKILL)
    after = len(segment.rollouts_logged())
    segment.wait_for(lambda: len(segment.rollouts_logged()) > after, 900, "a rollout after the engine died")
    restarted = engine_server(segment)
    scoreboard.fault("engine killed, --use-fault-tolerance (Megatron+SGLang)", survived=restarted not in (None, killed))
    assert restarted not in (None, killed)
    segment.kill()
    scoreboard.fault("driver kill -9 (Megatron+SGLang)", survived=True)
    chain.check_checkpoint()

    segment = chain.start()
    segment.wait_for(lambda: len(segment.metric_lines()) >= 1 and engine_server(segment), 900, "a rollout")
    tree = segment.tree()
    os.kill(engine_server(segment), signal.SIGKILL)
    clear, last = ended_with_clear_error(segment, time.monotonic(), 300)
    segment.assert_gone(tree)
    scoreboard.fault("engine killed, no fault tolerance: clear error (Megatron+SGLang)", survived=clear)
    assert clear and "engine" in last.lower(), last

    segment = chain.start()
    segment.wait_for(lambda: len(segment.metric_lines()) >= 1 and segment.pids("ray::TrainActor"), 900, "a rollout")
    tree = segment.tree()
    os.kill(segment.pids("ray::TrainActor")[0], signal.SIGKILL)
    clear, last = ended_with_clear_error(segment, time.monotonic(), 300)
    segment.assert_gone(tree)
    scoreboard.fault("train actor killed: clear error (Megatron+SGLang)", survived=clear)
    assert clear and "died" in last.lower(), last

    final = chain.start()
    assert final.wait_end(900) == 0, final.log()[-3000:]
    trained = chain.trained_prompts()
    expected = uninterrupted_prompts([*argv, "--num-rollout", str(num_rollout)], num_rollout, BATCH)
    lost = data_lost(trained, expected)
    scoreboard.fault("resume after 4 faults (Megatron+SGLang): prompt sequence", survived=lost == 0, data_lost=lost)
    assert trained == expected
    chain.rollout_ids_continue()
