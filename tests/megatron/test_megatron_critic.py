"""PPO's critic on the megatron backend (one process): initialised as slime does, values that are HF's hidden states
through the value head, the clipped value loss against GAE returns, the actor's advantages from the critic's
values, and a checkpoint that restores the critic."""

import numpy as np
import pytest
import torch
from megatron_helpers import assert_same_steps, make_args, make_batch, make_trainer, run_two_ranks

from slime_megatron.critic import MegatronCritic
from slime_megatron.hf_mapping import mapped_tensors
from slime_megatron.model import ValueHead, unwrap_model
from slime_megatron.roles import role_args

PPO = ("--advantage-estimator", "ppo")


def make_critic(args) -> MegatronCritic:
    return MegatronCritic(role_args(args, "critic"), 0, 1, on_cpu=True)


def _masked_sample_mean(per_token: dict[int, np.ndarray], batch, ids) -> float:
    """slime's per-sample reduction: each sample's mean over its trained tokens, then the mean over samples."""
    means = []
    for i in ids:
        mask = np.asarray(batch.loss_masks[i], dtype=np.float64)
        means.append(float((per_token[i] * mask).sum() / mask.sum()))
    return float(np.mean(means))


def test_the_critic_is_the_checkpoints_transformer_with_a_fresh_value_head(world, tiny_models):
    hf_dir = tiny_models["qwen2"]  # tied embeddings: the critic's head must still be its own
    critic = make_critic(make_args(hf_dir, *PPO))
    head = unwrap_model(critic.trainable.model).output_layer
    assert isinstance(head, ValueHead) and head.weight.shape == (1, critic.config.hidden_size)
    assert torch.equal(head.bias, torch.zeros(1)) and head.weight.abs().max() > 0
    actor = make_trainer(make_args(hf_dir, *PPO))
    actor_tensors = mapped_tensors(actor.trainable.model)
    critic_tensors = mapped_tensors(critic.trainable.model)
    body = [name for name in critic_tensors if not name.startswith("output_layer.")]
    assert len(body) > 10 and all(torch.equal(critic_tensors[n], actor_tensors[n]) for n in body)

    # Each response token's value is HF's last hidden state (after the final norm) of the position that sampled
    # it, through the head.
    from transformers import AutoModel

    batch = make_batch(600)
    values = critic.forward_values(batch, list(range(len(batch))))
    reference = AutoModel.from_pretrained(hf_dir, dtype=torch.float32).eval()
    for i, tokens in enumerate(batch.tokens):
        with torch.no_grad():
            hidden = reference(torch.tensor(tokens, dtype=torch.long)[None]).last_hidden_state[0]
        response = batch.response_lengths[i]
        expected = hidden[len(tokens) - response - 1 : len(tokens) - 1] @ head.weight[0].detach() + head.bias.detach()
        assert values[i].shape == (response,)
        assert (values[i] - expected).abs().max().item() < 1e-5, i


def test_the_critic_trains_on_the_clipped_value_loss_toward_the_returns(world, tiny_models):
    args = make_args(tiny_models["qwen3"], *PPO, "--value-clip", "0.2")
    critic = make_critic(args)
    batch = make_batch(600)
    steps, values = critic.train_critic(0, batch)
    assert sorted(values) == list(range(len(batch)))
    assert [len(values[i]) for i in range(len(batch))] == batch.response_lengths
    assert len(steps) == 2 and {"value_loss", "value_clipfrac", "grad_norm", "lr-pg_0"} <= set(steps[0])
    # gamma = lambda = 1 and no KL in the critic's rewards: every token's return is its sample's reward. The first
    # step starts from the values it returned (old = current), so the loss is the plain squared error.
    returns = {i: np.full(batch.response_lengths[i], batch.rewards[i]) for i in range(len(batch))}
    squared = {i: (values[i].astype(np.float64) - returns[i]) ** 2 for i in range(len(batch))}
    assert steps[0]["value_loss"] == pytest.approx(_masked_sample_mean(squared, batch, range(4)), rel=1e-5)
    assert steps[0]["value_clipfrac"] == 0.0
    assert steps[1]["value_loss"] != pytest.approx(_masked_sample_mean(squared, batch, range(4, 8)), rel=1e-5)

    losses = [steps[0]["value_loss"] + steps[1]["value_loss"]]
    for rollout_id in range(1, 6):
        more, _ = critic.train_critic(rollout_id, batch)
        losses.append(more[0]["value_loss"] + more[1]["value_loss"])
    assert losses[-1] < 0.5 * losses[0], losses  # it learns the returns


def test_the_actors_ppo_advantages_come_from_the_critics_values(world, tiny_models):
    hf_dir = tiny_models["qwen3"]
    batch = make_batch(600)
    _, values = make_critic(make_args(hf_dir, *PPO)).train_critic(0, batch)
    actor = make_trainer(make_args(hf_dir, *PPO))
    per_sample = [values[i] for i in range(len(batch))]
    steps = actor.train(0, batch, per_sample)
    assert len(steps) == 2 and steps[0]["grad_norm"] > 0
    # GAE with gamma = lambda = 1, no KL in the reward, no whitening: each token's advantage is reward - value.
    ids = range(len(batch))
    advantages = {i: batch.rewards[i] - values[i].astype(np.float64) for i in ids}
    means = actor.train_data_means
    assert means["rollout/advantages"] == pytest.approx(_masked_sample_mean(advantages, batch, ids), abs=1e-6)
    assert means["rollout/values"] == pytest.approx(_masked_sample_mean(values, batch, ids), abs=1e-6)

    with pytest.raises(ValueError, match="needs the critic's values"):
        make_trainer(make_args(hf_dir, *PPO)).train(0, batch)


def test_a_saved_critic_resumes_with_its_weights_and_optimizer(world, tiny_models, tmp_path):
    hf_dir = tiny_models["llama"]
    batch = make_batch(600)
    ids = list(range(len(batch)))
    trained = make_critic(make_args(hf_dir, *PPO, "--save", str(tmp_path / "ckpt")))
    trained.train_critic(0, batch)
    trained.save(0)
    assert (tmp_path / "ckpt" / "critic" / "latest_checkpointed_iteration.txt").read_text() == "0\n"
    assert not (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").exists()  # the actor's place stays free
    expected = trained.forward_values(batch, ids)
    next_steps, _ = trained.train_critic(1, batch)

    resumed = make_critic(make_args(hf_dir, *PPO, "--load", str(tmp_path / "ckpt")))
    assert resumed.start_rollout_id == 1
    restored = resumed.forward_values(batch, ids)
    assert all(torch.equal(restored[i], expected[i]) for i in ids)
    resumed_steps, _ = resumed.train_critic(1, batch)
    # The optimizer's moments came back too: the next step is the one the uninterrupted critic took.
    assert resumed_steps[0]["value_loss"] == pytest.approx(next_steps[0]["value_loss"], rel=1e-6)
    assert resumed_steps[1]["value_loss"] == pytest.approx(next_steps[1]["value_loss"], rel=1e-5)


@pytest.mark.slow
def test_the_critic_trains_alike_in_two_process_layouts(world, tiny_models, tmp_path):
    """TP=2 with sequence parallelism and recompute, PP=2, DP=2 (parallel_worker.py) against one process."""
    hf_dir = tiny_models["qwen2"]
    results = run_two_ranks(hf_dir, tmp_path, "critic")
    batch = make_batch(600)
    single = make_critic(make_args(hf_dir, *PPO))
    steps, values = single.train_critic(0, batch)
    more, _ = single.train_critic(1, batch)
    assert results.keys() == {"tp2", "pp2", "dp2"}
    for layout, result in results.items():
        assert_same_steps(result["steps"], steps + more, layout)
        # Each sample's values come from one rank: TP rank 0 of each data-parallel share, the first pipeline stage.
        expected_reported = [[0, 1, 2, 3, 4, 5, 6, 7], []] if layout != "dp2" else [[0, 1, 4, 5], [2, 3, 6, 7]]
        assert result["reported"] == expected_reported, layout
        for i in range(len(batch)):
            assert np.allclose(result["values"][str(i)], values[i], atol=1e-5), (layout, i)
