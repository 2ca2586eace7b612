"""slime's custom loss ``f(args, batch, logits, sum_of_sample_mean)`` on the megatron backend, beside ours
``f(args, batch, reducer)``: the same training as the built-in loss, slime's batch dict and packed logits."""

import pytest
import torch
from megatron_helpers import assert_same_steps, make_args, make_batch, make_trainer, train_rollouts

from slime.errors import ConfigError
from slime.rl.losses import policy_loss

SLIME_KEYS = {
    "tokens",
    "unconcat_tokens",
    "total_lengths",
    "response_lengths",
    "loss_masks",
    "full_loss_masks",
    "rollout_mask_sums",
    "advantages",
    "returns",
    "log_probs",
    "ref_log_probs",
    "rollout_log_probs",
    "teacher_log_probs",
    "values",
    "packed_seq_params",
    "multimodal_train_inputs",
}
SEEN: list[dict] = []


def recording_loss(args, batch, logits, sum_of_sample_mean):
    """slime's form: records what it is given, trains -A * log p, and reports a constant metric."""
    from slime.backends.megatron_utils.loss import get_log_probs_and_entropy

    _, outputs = get_log_probs_and_entropy(
        logits,
        args=args,
        unconcat_tokens=batch["unconcat_tokens"],
        total_lengths=batch["total_lengths"],
        response_lengths=batch["response_lengths"],
    )
    ones = torch.ones(sum(batch["response_lengths"]))
    SEEN.append(
        {
            "batch": batch,
            "logits_shape": tuple(logits.shape),
            "log_probs": [lp.detach() for lp in outputs["log_probs"]],
            "sum_of_ones": float(sum_of_sample_mean(ones)),
        }
    )
    loss = sum_of_sample_mean(-torch.cat(outputs["log_probs"]) * torch.cat(batch["advantages"]))
    return loss, {"loss": loss.detach(), "one": 1.0}


def our_policy_loss(args, batch, reducer):
    """Our form, through --custom-loss-function-path: the built-in policy loss itself."""
    return policy_loss(args, batch, reducer)


def two_argument_loss(args, batch):
    raise AssertionError("never called: neither slime's loss form nor ours")


def _custom(path: str) -> tuple[str, ...]:
    return ("--loss-type", "custom_loss", "--custom-loss-function-path", path)


@pytest.mark.parametrize(
    "flags",
    [
        # two steps per rollout: the second is off-policy, its ratio clipped against recomputed old log-probs
        ("--global-batch-size", "4"),
        # one step per rollout: no old-policy pass, batch["log_probs"] are the loss forward's own
        ("--global-batch-size", "8"),
        ("--global-batch-size", "8", "--calculate-per-token-loss"),
    ],
    ids=["two_steps", "one_step", "one_step_per_token"],
)
def test_slime_form_policy_loss_trains_like_the_built_in_one(world, tiny_models, flags):
    batch = make_batch(600)
    # Two samples per micro-batch: samples of different lengths padded together, then packed for slime's form.
    base = (*flags, "--micro-batch-size", "2")
    built_in = make_trainer(make_args(tiny_models["qwen3"], *base))
    expected = train_rollouts(built_in, batch, range(2))
    slime_form = make_trainer(make_args(tiny_models["qwen3"], *base, *_custom("megatron_helpers.slime_policy_loss")))
    got = train_rollouts(slime_form, batch, range(2))
    assert_same_steps(got, expected, "slime's form")
    assert got[0]["grad_norm"] > 0 and any(step["pg_clipfrac"] > 0 for step in expected) == (flags[1] == "4")
    assert slime_form.train_data_means.keys() == built_in.train_data_means.keys()
    for name, value in built_in.train_data_means.items():  # rollout/log_probs, from the loss forward on one step
        assert slime_form.train_data_means[name] == pytest.approx(value, abs=1e-5), name


def test_slime_form_gets_slime_batch_and_packed_logits(world, tiny_models):
    SEEN.clear()
    args = make_args(tiny_models["qwen2"], "--micro-batch-size", "2", *_custom(f"{__name__}.recording_loss"))
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    before = trainer.compute_log_probs(batch, list(range(len(batch))))
    steps = trainer.train(0, batch)

    assert len(SEEN) == 4  # 2 steps of 4 samples, 2 samples per micro-batch
    # slime divides every metric by the step's samples: a constant 1 per micro-batch is 2 micro-batches / 4 samples.
    assert steps[0]["one"] == pytest.approx(0.5) and steps[0]["loss"] != 0
    for micro_batch, sample_ids in zip(SEEN[:2], ([0, 1], [2, 3]), strict=True):
        seen = micro_batch["batch"]
        assert seen.keys() == SLIME_KEYS
        tokens = [batch.tokens[i].tolist() for i in sample_ids]
        lengths = [batch.response_lengths[i] for i in sample_ids]
        total = sum(map(len, tokens))
        assert [t.tolist() for t in seen["unconcat_tokens"]] == tokens
        assert seen["tokens"].tolist() == [tokens[0] + tokens[1]]
        assert seen["total_lengths"] == [len(t) for t in tokens] and seen["response_lengths"] == lengths
        # logits [1, T, vocab]: the samples' unpadded positions, in order, over the whole (padded) vocabulary
        assert micro_batch["logits_shape"] == (1, total, trainer.hf.padded_vocab_size(1))
        assert seen["packed_seq_params"] is None and seen["multimodal_train_inputs"] is None
        for name in ("rollout_log_probs", "teacher_log_probs", "values"):
            assert seen[name] is None, name  # not in this run
        offset = 0
        for k, i in enumerate(sample_ids):
            mask = torch.tensor(batch.loss_masks[i], dtype=torch.float32)
            assert torch.equal(seen["loss_masks"][k], mask)
            assert float(seen["rollout_mask_sums"][k]) == mask.sum()
            for name in ("advantages", "returns", "log_probs", "ref_log_probs"):
                assert seen[name][k].shape == (lengths[k],), name
            # full_loss_masks: the mask at the positions whose logits predict the response tokens
            full = seen["full_loss_masks"][0, offset : offset + len(tokens[k])]
            assert torch.equal(full[len(tokens[k]) - lengths[k] - 1 : -1], mask) and full.sum() == mask.sum()
            offset += len(tokens[k])
            # slime's helper on the packed logits: the log-probs the trainer computes from its padded ones, as do
            # the old-policy and reference log-probs of this first step (the weights have not moved yet).
            for log_probs in (micro_batch["log_probs"][k], seen["log_probs"][k], seen["ref_log_probs"][k]):
                assert (log_probs - before[i]).abs().max() < 1e-5
        # slime's sum_of_sample_mean: the micro-batch's sum of per-sample means (each sample has trained tokens)
        assert micro_batch["sum_of_ones"] == pytest.approx(2.0)


def test_our_form_through_custom_loss_function_path_and_an_unrecognised_one(world, tiny_models):
    batch = make_batch(600)
    expected = train_rollouts(make_trainer(make_args(tiny_models["qwen2"])), batch, range(1))
    trainer = make_trainer(make_args(tiny_models["qwen2"], *_custom(f"{__name__}.our_policy_loss")))
    assert_same_steps(train_rollouts(trainer, batch, range(1)), expected, "our form")

    trainer.args.custom_loss_function_path = f"{__name__}.two_argument_loss"
    with pytest.raises(ConfigError) as error:
        trainer.train(1, batch)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--custom-loss-function-path '{__name__}.two_argument_loss'")
    assert "neither slime's loss f(args, batch, logits, sum_of_sample_mean) nor ours f(args, batch, reducer)" in message
