"""RL training with the megatron backend in one process: on-policy start, learning, checkpoints and resume."""

import numpy as np
import pytest
import torch
from megatron_helpers import make_args, make_batch, make_trainer, train_rollouts

from slime.types import RaggedArray
from slime_megatron import checkpoint
from slime_megatron.batches import balanced_shares, make_micro_batches, split_by_tokens


def _mean_of_sample_means(per_token, masks) -> float:
    """float64 reference of slime's rollout/* means: each sample's mean over its trained tokens, then over samples."""
    sample_means = []
    for values, mask in zip(per_token, masks, strict=True):
        values = np.asarray(values, dtype=np.float64)
        assert mask.sum() > 0  # make_batch trains at least one token of every sample
        sample_means.append((values * mask).sum() / mask.sum())
    return float(np.mean(sample_means))


def _objective(trainer, batch) -> float:
    """sum_i reward_i * (mean log-prob of sample i's trainable tokens): what the policy gradient pushes up."""
    log_probs = trainer.compute_log_probs(batch, list(range(len(batch))))
    total = 0.0
    for i, reward in enumerate(batch.rewards):
        mask = torch.tensor(batch.loss_masks[i], dtype=torch.float32)
        total += reward * float((log_probs[i] * mask).sum() / mask.sum())
    return total


def test_first_step_is_on_policy_and_training_improves_the_policy(world, tiny_models):
    trainer = make_trainer(make_args(tiny_models["qwen2"]))
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    actor, reference = trainer.compute_log_probs(batch, ids), trainer.compute_ref_log_probs(batch, ids)
    assert all(torch.equal(actor[i], reference[i]) for i in ids)

    objectives = [_objective(trainer, batch)]
    for rollout_id in range(3):
        steps = trainer.train(rollout_id, batch)
        assert len(steps) == 2  # 8 samples, --global-batch-size 4
        if rollout_id == 0:
            assert steps[0]["ppo_kl"] == 0.0 and steps[0]["kl_loss"] == 0.0
            assert steps[1]["ppo_kl"] != 0.0  # the second step is off-policy: old log-probs were recomputed
        assert all(step["grad_norm"] > 0 and step["lr-pg_0"] == 1e-3 for step in steps)
        objectives.append(_objective(trainer, batch))
    assert objectives == sorted(objectives) and objectives[-1] > objectives[0] + 0.05, objectives
    assert {"perf/actor_train_time", "perf/log_probs_time", "perf/ref_log_probs_time"} <= set(trainer.perf)


def test_resume_from_checkpoint_continues_the_run_exactly(world, tiny_models, tmp_path):
    args = make_args(tiny_models["llama"], "--save", str(tmp_path / "ckpt"), "--lr-warmup-iters", "3")
    batch = make_batch(600, seed=1)
    trainer = make_trainer(args)
    train_rollouts(trainer, batch, range(1))
    trainer.save(0)
    uninterrupted = train_rollouts(trainer, batch, range(1, 2))

    resumed = make_trainer(make_args(tiny_models["llama"], "--load", str(tmp_path / "ckpt"), "--lr-warmup-iters", "3"))
    assert resumed.start_rollout_id == 1
    continued = train_rollouts(resumed, batch, range(1, 2))
    for expected, got in zip(uninterrupted, continued, strict=True):
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name] == pytest.approx(expected[name], abs=1e-6), name
    assert continued[0]["lr-pg_0"] == pytest.approx(2e-3 / 3)  # warmup resumed at step 2 of 3


def test_a_crash_mid_save_leaves_the_previous_checkpoint(world, tiny_models, tmp_path, monkeypatch):
    root = tmp_path / "ckpt"
    trainer = make_trainer(make_args(tiny_models["qwen2"], "--save", str(root)))
    checkpoint.save_checkpoint(root, 0, trainer.trainable)

    def crash(state, directory):
        (checkpoint.Path(directory) / "__0_0.distcp").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.dist_checkpointing, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(root, 1, trainer.trainable)
    assert checkpoint.latest_iteration(root) == 0
    assert not (root / "iter_0000001").exists()
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(root, trainer.trainable) == 0


def test_balanced_shares_and_sequence_parallel_padding():
    lengths = [5, 12, 6, 7, 9, 10, 8, 11]
    shares = balanced_shares(list(range(8)), lengths, 2)  # --balance-data: equal counts, even tokens
    assert [len(share) for share in shares] == [4, 4] and sorted(shares[0] + shares[1]) == list(range(8))
    assert [sum(lengths[i] for i in share) for share in shares] == [34, 34]  # contiguous halves: 30 and 38
    padded = make_micro_batches([[1] * 5, [2] * 4], [2, 2], [[0, 1]], pad_to_multiple=4)[0]
    assert padded.tokens.shape == (2, 8) and padded.total_lengths == [5, 4]


def test_micro_batches_by_token_budget_train_like_micro_batches_by_count(world, tiny_models):
    lengths = [5, 12, 6, 7, 9, 10, 8, 11]
    assert split_by_tokens(list(range(8)), lengths, 24) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert split_by_tokens([1, 0, 2], lengths, 10) == [[1], [0], [2]]  # a sample over budget stands alone

    batch = make_batch(600, seed=2)
    by_count = train_rollouts(make_trainer(make_args(tiny_models["qwen3"])), batch, range(2))
    args = make_args(tiny_models["qwen3"], "--use-dynamic-batch-size", "--max-tokens-per-gpu", "30")
    by_tokens = train_rollouts(make_trainer(args), batch, range(2))
    for expected, got in zip(by_count, by_tokens, strict=True):
        for name in expected:  # other groupings sum gradients in another order: float rounding only
            assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-5), name


def test_rollout_means_of_the_training_data(world, tiny_models):
    """``rollout/*`` from the trainer, as slime's log_rollout_data: the policy's and the reference's log-probs before
    the update, advantages and returns, each averaged over a sample's trained tokens, then over samples."""
    args = make_args(
        tiny_models["qwen3"], "--advantage-estimator", "reinforce_plus_plus_baseline", "--normalize-advantages"
    )
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    masks = [np.asarray(batch.loss_masks[i], dtype=np.float64) for i in ids]
    before = trainer.compute_log_probs(batch, ids)
    ref = trainer.compute_ref_log_probs(batch, ids)
    # reinforce_plus_plus_baseline with --kl-coef 0: every response token's advantage (and return) is the sample's
    # reward; --normalize-advantages whitens the advantages over the step's trained tokens (population variance).
    per_token_rewards = [np.full(len(m), reward) for reward, m in zip(batch.rewards, masks, strict=True)]
    trained = np.concatenate(masks)
    flat = np.concatenate(per_token_rewards)
    mean = (flat * trained).sum() / trained.sum()
    std = np.sqrt((((flat - mean) ** 2) * trained).sum() / trained.sum() + 1e-8)
    whitened = [(r - mean) / std for r in per_token_rewards]
    expected = {
        "log_probs": _mean_of_sample_means([before[i] for i in ids], masks),
        "ref_log_probs": _mean_of_sample_means([ref[i] for i in ids], masks),
        "advantages": _mean_of_sample_means(whitened, masks),
        "returns": _mean_of_sample_means(per_token_rewards, masks),
    }
    # Numbers worked out by hand for make_batch's rewards (0.75 for samples 0, 3, 6, else -0.25): returns average them.
    assert expected["returns"] == pytest.approx((3 * 0.75 - 5 * 0.25) / 8)

    trainer.train(0, batch)
    means = trainer.train_data_means
    assert sorted(means) == ["rollout/advantages", "rollout/log_probs", "rollout/ref_log_probs", "rollout/returns"]
    for name, value in expected.items():
        assert means[f"rollout/{name}"] == pytest.approx(value, abs=1e-6), name
    assert means["rollout/log_probs"] < 0 and means["rollout/advantages"] != 0


@pytest.mark.parametrize("loss_reduction", [[], ["--calculate-per-token-loss"]])
def test_one_step_rollout_logs_the_policy_log_probs_of_its_forward(world, tiny_models, loss_reduction):
    """With one optimizer step per rollout and no KL in the reward no separate log-prob pass runs: rollout/log_probs
    comes from the step's own forward (before the update), not from train/*, averaged per sample whatever the loss's
    reduction."""
    args = make_args(tiny_models["qwen3"], "--global-batch-size", "8", *loss_reduction)
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    masks = [np.asarray(batch.loss_masks[i], dtype=np.float64) for i in ids]
    before = trainer.compute_log_probs(batch, ids)
    expected = _mean_of_sample_means([before[i] for i in ids], masks)

    (step,) = trainer.train(0, batch)
    assert "log_probs_time" not in {k.removeprefix("perf/") for k in trainer.perf}  # no separate pass ran
    assert trainer.train_data_means["rollout/log_probs"] == pytest.approx(expected, abs=1e-5)
    assert not any("log_probs" in name for name in step)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mismatch_metrics_and_importance_weights(world, tiny_models, shift):
    """--get-mismatch-metrics and icepop in the megatron trainer: the engine's log-probs equal to the trainer's give
    metrics of about 0 and weights of 1; shifted by +-0.5 (ratios e^0.5, e^-0.5, outside [0.7, 1.3]) every token's
    weight is 0, so the policy loss is 0 while the KL terms remain."""
    icepop = ("--use-tis", "--custom-tis-function-path", "icepop", "--tis-clip-low", "0.7", "--tis-clip", "1.3")
    args = make_args(tiny_models["qwen3"], "--global-batch-size", "8", "--get-mismatch-metrics", *icepop)
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    before = trainer.compute_log_probs(batch, list(range(len(batch))))
    engine = [[lp + shift * (-1) ** t for t, lp in enumerate(before[i].tolist())] for i in range(len(batch))]
    batch.rollout_log_probs = RaggedArray.from_lists(engine, "f")

    (step,) = trainer.train(0, batch)
    assert {"ois", "tis", "tis_clipfrac", "tis_abs", "mis_kl", "mis_k3_kl", "mis_chi2_seq"} <= set(step)
    assert step["ois"] == pytest.approx(1.0, abs=1e-5)  # one step per rollout: on-policy
    if shift == 0.0:
        for name in ("mis_k3_kl", "mis_kl", "mis_chi2_token", "mis_log_ppl_abs_diff", "train_rollout_logprob_abs_diff"):
            assert abs(step[name]) < 1e-5, name
        assert step["tis"] == pytest.approx(1.0, abs=1e-5) and step["tis_clipfrac"] == 0.0
        assert step["pg_loss"] != 0.0
    else:
        assert step["train_rollout_logprob_abs_diff"] == pytest.approx(0.5, abs=1e-5)
        assert step["mis_k3_kl"] > 0.1 and step["tis_clipfrac"] == pytest.approx(1.0)
        assert step["pg_loss"] == 0.0 and step["kl_loss"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("global_batch", ["4", "8"])
def test_rollout_entropy_of_the_policy_and_the_reference(world, tiny_models, global_batch):
    """--use-rollout-entropy (slime: entropy with the log-probs of the policy and the reference before training):
    rollout/entropy and rollout/ref_entropy, averaged like the other rollout means. With one step per rollout no
    separate pass runs and the step's own forward gives it, as for rollout/log_probs."""
    args = make_args(tiny_models["qwen3"], "--global-batch-size", global_batch, "--use-rollout-entropy")
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    masks = [np.asarray(batch.loss_masks[i], dtype=np.float64) for i in ids]
    entropy = trainer.forward_log_probs(batch, ids)["entropy"]
    expected = _mean_of_sample_means([entropy[i].double().cpu().numpy() for i in ids], masks)
    assert expected > 0

    trainer.train(0, batch)
    means = trainer.train_data_means
    assert means["rollout/entropy"] == pytest.approx(expected, abs=1e-5)
    assert means["rollout/ref_entropy"] == pytest.approx(expected, abs=1e-5)  # the reference starts as the policy


def test_keep_old_actor_takes_the_old_log_probs_from_the_weights_that_generated_the_rollout(world, tiny_models):
    """--keep-old-actor: a rollout generated with weights of version 0 (sent, then trained on once without a new
    send, as with --update-weights-interval 2 or --async) gets its old log-probs from those weights, not from the
    current ones; weights no later rollout can have been generated with are dropped."""
    trainer = make_trainer(make_args(tiny_models["qwen2"], "--keep-old-actor"))
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    masks = [np.asarray(batch.loss_masks[i], dtype=np.float64) for i in ids]
    batch.weight_versions = ["0"] * len(batch)
    trainer.weights_sent("0")
    sent = trainer.compute_log_probs(batch, ids)

    first = trainer.train(0, batch)
    assert first[0]["ppo_kl"] == 0.0  # the current weights are the sent ones: on-policy
    current = trainer.compute_log_probs(batch, ids)
    second = trainer.train(1, batch)  # generated with version 0 again
    logged = trainer.train_data_means["rollout/log_probs"]
    assert logged == pytest.approx(_mean_of_sample_means([sent[i] for i in ids], masks), abs=1e-6)
    assert logged != pytest.approx(_mean_of_sample_means([current[i] for i in ids], masks), abs=1e-4)
    assert second[0]["ppo_kl"] != 0.0  # off-policy from its first step

    trainer.weights_sent("2")
    batch.weight_versions = ["2"] * len(batch)
    trainer.train(2, batch)
    assert sorted(trainer.sent_weights) == [2]
    batch.weight_versions = ["0"] * len(batch)
    with pytest.raises(RuntimeError, match=r"sample 0 was generated with weights of version 0, .* \(kept: \[2\]\)"):
        trainer.train(3, batch)


def test_ref_update_interval_copies_the_actor_into_the_reference(world, tiny_models):
    trainer = make_trainer(make_args(tiny_models["qwen2"], "--ref-update-interval", "2"))
    batch = make_batch(trainer.hf.vocab_size)
    ids = list(range(len(batch)))
    initial = trainer.compute_ref_log_probs(batch, ids)
    trainer.train(0, batch)
    after_one = trainer.compute_ref_log_probs(batch, ids)
    assert all(torch.equal(initial[i], after_one[i]) for i in ids)  # (0 + 1) % 2: not yet
    trainer.train(1, batch)
    actor, reference = trainer.compute_log_probs(batch, ids), trainer.compute_ref_log_probs(batch, ids)
    assert all(torch.equal(actor[i], reference[i]) for i in ids)
    assert not all(torch.equal(initial[i], reference[i]) for i in ids)
