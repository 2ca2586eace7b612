"""TP=2 (+SP, recompute; also with slime's form of custom loss), PP=2 and DP=2 (distributed optimizer, balanced data,
SGD) over two gloo processes train exactly like one process; checkpoints reshard TP=2 -> TP=1."""

import pytest
from megatron_helpers import assert_same_steps, make_args, make_batch, make_trainer, run_two_ranks, train_rollouts


@pytest.mark.slow
def test_two_process_layouts_match_one_process(world, tiny_models, tmp_path):
    hf_dir = tiny_models["qwen2"]  # tied embeddings: PP=2 keeps a copy on the last stage
    results = run_two_ranks(hf_dir, tmp_path)
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
        assert_same_steps(steps, expected.get(layout, single), layout)
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
        assert_same_steps(train_rollouts(resumed, batch, range(1, 2)), parallel[layout][2:], f"{layout} resume")
