import pytest
import torch
from samples import LOOPING, VARIED, rollout_samples, sample

from slime.metrics.rollout import (
    has_repetition,
    multi_turn_metrics,
    passrate_metrics,
    rollout_metrics,
    train_data_means,
)
from slime.types import Status


def test_rollout_metrics_names_and_values():
    metrics = rollout_metrics(rollout_samples(), drop_reasons={"zero_std": 3, "too_long": 1})
    assert metrics == {
        # trained lengths 4, 4, 2, 8, 10, 10, 10, 10
        "rollout/response_len/mean": 58 / 8,
        "rollout/response_len/median": 9.0,
        "rollout/response_len/max": 10.0,
        "rollout/response_len/min": 2.0,
        "rollout/zero_std/count_1.0": 1,  # group 1
        "rollout/repetition_frac": 1 / 8,
        "rollout/truncated_ratio": 2 / 8,
        "rollout/raw_reward": 6 / 8,
        "rollout/reward_errors": 1,
        "rollout/dynamic_filter/drop_zero_std": 3,
        "rollout/dynamic_filter/drop_too_long": 1,
    }


def test_zero_std_counts_each_reward_and_is_off_for_ppo():
    samples = [sample(g, g * 2 + i, 1, reward) for g, reward in enumerate([0.0, 0.0, 1.0, 0.5]) for i in range(2)]
    samples.append(sample(4, 8, 1, 0.0))
    samples.append(sample(4, 9, 1, 1.0))
    metrics = rollout_metrics(samples)
    assert {k: v for k, v in metrics.items() if "zero_std" in k} == {
        "rollout/zero_std/count_0.0": 2,
        "rollout/zero_std/count_1.0": 1,
        "rollout/zero_std/count_0.5": 1,
    }
    assert not any("zero_std" in k for k in rollout_metrics(samples, group_rewards=False))


def test_dict_rewards_use_the_reward_key():
    samples = [sample(0, i, 1, {"acc": float(i % 2), "format": 1.0}) for i in range(4)]
    assert rollout_metrics(samples, reward_key="acc")["rollout/raw_reward"] == 0.5
    with pytest.raises(ValueError, match="dict reward"):
        rollout_metrics(samples)


def test_a_sample_without_reward_is_an_error():
    with pytest.raises(ValueError, match="sample 1 .* has no reward"):
        rollout_metrics([sample(0, 0, 1, 1.0), sample(0, 1, 1, None)])


def test_repetition_is_slime_rule():
    assert has_repetition(LOOPING)
    assert not has_repetition(VARIED)
    assert not has_repetition("ab" * 5000)  # exactly 10,000 characters: too short to count


def test_train_data_means_scalars_and_masked_tokens():
    # Sample 0: tokens -1, -3 (both trained) -> -2. Sample 1: -1, (-9 untrained), -2 -> -1.5. Mean over samples -1.75.
    log_probs = [torch.tensor([-1.0, -3.0]), torch.tensor([-1.0, -9.0, -2.0])]
    masks = [[1, 1], torch.tensor([1, 0, 1])]
    means = train_data_means(
        {"log_probs": log_probs, "advantages": [[0.5, 0.5], [1.0, 1.0, 1.0]], "rewards": [1.0, -1.0], "tokens": [[1]]},
        loss_masks=masks,
    )
    assert means == {"log_probs": -1.75, "advantages": 0.75, "rewards": 0.0}


def test_train_data_means_sample_without_trained_tokens_counts_zero():
    means = train_data_means({"kl": [[2.0, 2.0], [5.0]]}, loss_masks=[[1, 1], [0]])
    assert means == {"kl": 1.0}  # (2 + 0) / 2


def test_train_data_means_checks_alignment():
    with pytest.raises(ValueError, match="'kl': per-token values and loss masks differ"):
        train_data_means({"kl": [[1.0, 2.0]]}, loss_masks=[[1]])


def test_rollout_metrics_include_train_means_under_their_names():
    samples = rollout_samples()[:2]
    metrics = rollout_metrics(
        samples,
        train_data={"rewards": [0.7, -0.7], "log_probs": [[-0.5] * 4, [-0.25] * 6]},
        loss_masks=[s.loss_mask for s in samples],
    )
    assert metrics["rollout/rewards"] == 0.0
    assert metrics["rollout/log_probs"] == pytest.approx(-0.375)


def test_multi_turn_metrics():
    metrics = multi_turn_metrics(rollout_samples(), max_response_len=10)
    assert metrics == {
        # raw lengths 4, 6, 2, 8, 10, 10, 10, 10; four reach the limit of 10
        "multi_turn/raw_response_length/response_length_mean": 7.5,
        "multi_turn/raw_response_length/response_length_max": 10.0,
        "multi_turn/raw_response_length/response_length_min": 2.0,
        "multi_turn/raw_response_length/response_length_clip_ratio": 0.5,
        # without observation (mask-0) tokens: 4, 4, 2, 8, 10, 10, 10, 10
        "multi_turn/wo_obs_response_length/response_length_mean": 7.25,
        "multi_turn/wo_obs_response_length/response_length_max": 10.0,
        "multi_turn/wo_obs_response_length/response_length_min": 2.0,
        # rounds 1, 2, 1, 3, 1, 1, 1, 1
        "multi_turn/multi_turn_metric/round_number_mean": 11 / 8,
        "multi_turn/multi_turn_metric/round_number_max": 3.0,
        "multi_turn/multi_turn_metric/round_number_min": 1.0,
    }


def test_multi_turn_without_limit_or_rounds():
    samples = [sample(0, 0, 3, 1.0, status=Status.COMPLETED)]
    keys = set(multi_turn_metrics(samples))
    assert "multi_turn/raw_response_length/response_length_clip_ratio" not in keys
    assert not any("round_number" in k for k in keys)


def test_passrate_powers_of_two_up_to_n():
    # group 0: 2 of 4 correct -> pass@1 1/2, pass@2 1 - C(2,2)/C(4,2) = 5/6, pass@4 1; group 1: 4 of 4 -> all 1.
    rewards = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    metrics = passrate_metrics(rewards, 4)
    assert metrics.keys() == {"passrate/pass@1", "passrate/pass@2", "passrate/pass@4"}
    assert metrics["passrate/pass@1"] == pytest.approx(0.75)
    assert metrics["passrate/pass@2"] == pytest.approx((5 / 6 + 1) / 2)
    assert metrics["passrate/pass@4"] == pytest.approx(1.0)
    assert set(passrate_metrics([1.0] * 12, 6)) == {"passrate/pass@1", "passrate/pass@2", "passrate/pass@4"}
    assert passrate_metrics([1.0, 0.0], 1) == {}  # one sample per prompt: slime logs no pass@k
