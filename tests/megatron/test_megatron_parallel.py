"""TP=2 (+SP, recompute), PP=2 and DP=2 (distributed optimizer, balanced data, SGD) over two gloo processes train
exactly like one process; checkpoints reshard TP=2 -> TP=1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from megatron_helpers import free_port, make_args, make_batch, make_trainer, train_rollouts

WORKER = Path(__file__).parent / "parallel_worker.py"


def _run_two_ranks(hf_dir: Path, tmp_path: Path) -> dict:
    results, port = tmp_path / "results.json", str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(hf_dir), str(tmp_path / "ckpt"), str(results)],
            env={**os.environ, "RANK": str(rank), "MASTER_PORT": port},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=480)[0])
    finally:
        for proc in procs:
            proc.kill()
    for rank, (proc, output) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{output[-6000:]}"
    return json.loads(results.read_text())


def _assert_same_steps(got: list[dict], expected: list[dict], what: str) -> None:
    assert len(got) == len(expected), what
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.keys() == e.keys(), what
        for name in e:
            # 1e-5 absolute, or relative for large values (grad norms): ranks sum in another order.
            close = pytest.approx(e[name], rel=1e-5, abs=1e-5)
            assert g[name] == close, f"{what}: step {step} {name}: {g[name]} != {e[name]}"


@pytest.mark.slow
def test_two_process_layouts_match_one_process(world, tiny_models, tmp_path):
    hf_dir = tiny_models["qwen2"]  # tied embeddings: PP=2 keeps a copy on the last stage
    results = _run_two_ranks(hf_dir, tmp_path)
    parallel = results["steps"]
    assert results["exports"] == dict.fromkeys(parallel, True)  # HF -> megatron -> HF bit-exact in every layout

    batch = make_batch(600)
    trainer = make_trainer(make_args(hf_dir))
    single = train_rollouts(trainer, batch, range(1))
    single_means = trainer.train_data_means
    single += train_rollouts(trainer, batch, range(1, 2))
    assert len(single) == 4 and single[3]["ppo_kl"] != 0.0  # an off-policy step, compared too
    per_token = train_rollouts(make_trainer(make_args(hf_dir, "--calculate-per-token-loss")), batch, range(2))
    assert any(abs(p["pg_loss"] - s["pg_loss"]) > 1e-3 for p, s in zip(per_token, single, strict=True))
    sgd = train_rollouts(make_trainer(make_args(hf_dir, "--optimizer", "sgd")), batch, range(2))
    assert abs(sgd[1]["loss"] - single[1]["loss"]) > 1e-4  # the optimizer flag reaches megatron
    expected = {"dp2_per_token_loss": per_token, "dp2_sgd": sgd}
    for layout, steps in parallel.items():
        _assert_same_steps(steps, expected.get(layout, single), layout)
    # The trainer's rollout/* means cover the whole rollout in every layout (DP ranks each hold half of it).
    assert {"rollout/advantages", "rollout/log_probs", "rollout/ref_log_probs"} <= set(single_means)
    for layout, means in results["means"].items():
        assert means.keys() == single_means.keys(), layout
        for name, value in single_means.items():
            assert means[name] == pytest.approx(value, abs=1e-5), f"{layout}: {name}"

    # Checkpoints of rollout 0 load in one process and continue like the uninterrupted two-process runs:
    # TP=2 -> TP=1, and the distributed optimizer's dp_reshardable state DP=2 -> DP=1.
    for layout, flags in (("tp2", []), ("dp2_distributed_optimizer", ["--use-distributed-optimizer"])):
        resumed = make_trainer(make_args(hf_dir, "--load", str(tmp_path / "ckpt" / layout), *flags))
        assert resumed.start_rollout_id == 1
        _assert_same_steps(train_rollouts(resumed, batch, range(1, 2)), parallel[layout][2:], f"{layout} resume")
