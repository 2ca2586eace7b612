"""samples_to_train_batch: what the trainer receives, per-token data in RaggedArrays that survive the trip
through Ray (pickled, as the object store does) with every value intact."""

import pickle

import numpy as np
import pytest
import torch

from slime.config.arguments import parse_args
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import RaggedArray, Sample, Status

ARGS = ["--rollout-batch-size", "1", "--n-samples-per-prompt", "3", "--disable-rewards-normalization"]


def sample(index: int, prompt: list[int], response: list[int], **fields) -> Sample:
    return Sample(index=index, tokens=prompt + response, response_length=len(response), **fields)


def test_per_token_data_arrives_with_the_samples_values() -> None:
    samples = [
        sample(0, [5, 6], [151_643, 7, 8], reward=1.0, rollout_log_probs=[-0.5, -1.25, -0.125]),
        sample(1, [5], [9, 10], reward=0.0, loss_mask=[0, 1], rollout_log_probs=[-2.0, -0.75]),
        sample(2, [5, 6, 7], [11], reward=0.5, remove_sample=True, rollout_log_probs=[-3.0]),
    ]
    samples[0].status = Status.TRUNCATED
    batch = pickle.loads(pickle.dumps(samples_to_train_batch(parse_args(ARGS), samples)))

    assert isinstance(batch.tokens, RaggedArray) and batch.tokens.values.dtype == np.int32
    assert [t.tolist() for t in batch.tokens] == [[5, 6, 151_643, 7, 8], [5, 9, 10], [5, 6, 7, 11]]
    assert [m.tolist() for m in batch.loss_masks] == [[1, 1, 1], [0, 1], [0]]  # default ones; removed: zeros
    assert [lp.tolist() for lp in batch.rollout_log_probs] == [[-0.5, -1.25, -0.125], [-2.0, -0.75], [-3.0]]
    assert batch.rollout_log_probs.values.dtype == np.float32
    assert batch.response_lengths == [3, 2, 1] and batch.truncated == [True, False, False]
    assert batch.raw_rewards == [1.0, 0.0, 0.5] and len(batch) == 3
    # What a train backend does with an item: the same tensor a list gave.
    assert torch.equal(torch.tensor(batch.tokens[0], dtype=torch.long), torch.tensor([5, 6, 151_643, 7, 8]))
    assert torch.equal(torch.tensor(batch.loss_masks[1], dtype=torch.float32), torch.tensor([0.0, 1.0]))


def test_a_mask_of_the_wrong_length_or_kind_names_the_sample() -> None:
    args = parse_args(ARGS)
    with pytest.raises(ValueError, match="sample 4: loss mask has 1 entries for 2"):
        samples_to_train_batch(args, [sample(4, [1], [2, 3], reward=1.0, loss_mask=[1])])
    with pytest.raises(ValueError, match="sample 5: loss mask entries must be 0 or 1"):
        samples_to_train_batch(args, [sample(5, [1], [2, 3], reward=1.0, loss_mask=[1, 0.5])])
    with pytest.raises(ValueError, match="sample 6: loss mask entries must be 0 or 1"):
        samples_to_train_batch(args, [sample(6, [1], [2, 3], reward=1.0, loss_mask=[2, 1])])


def test_missing_log_probs_on_any_sample_leave_none() -> None:
    samples = [sample(0, [1], [2], reward=1.0, rollout_log_probs=[-1.0]), sample(1, [1], [3], reward=0.0)]
    assert samples_to_train_batch(parse_args(ARGS), samples).rollout_log_probs is None


def test_ragged_array_items_are_the_sequences() -> None:
    ragged = RaggedArray.from_lists([[1, 2, 3], (), [4]], "b")
    assert len(ragged) == 3 and [item.tolist() for item in ragged] == [[1, 2, 3], [], [4]]
    assert ragged[-1].tolist() == [4] and ragged[1].dtype == np.int8
    with pytest.raises(IndexError, match="index 3 out of range for 3 sequences"):
        ragged[3]
    assert len(RaggedArray.from_lists([], "i")) == 0


def test_a_numpy_mask_is_read_by_value() -> None:
    """bytes() of an int64 array would be its raw memory (eight bytes a value): the values are taken instead."""
    masked = sample(7, [1], [2, 3], reward=1.0, loss_mask=np.array([0, 1], dtype=np.int64))
    batch = samples_to_train_batch(parse_args(ARGS), [masked])
    assert batch.loss_masks[0].tolist() == [0, 1]


def test_a_sample_whose_reward_failed_trains_nothing_and_leaves_its_group_statistics() -> None:
    """FAILED (the reward function raised or timed out): its reward 0 is not a score, so it neither trains nor
    shifts its group's GRPO mean and std."""
    args = parse_args(["--rollout-batch-size", "1", "--n-samples-per-prompt", "3", "--advantage-estimator", "grpo"])
    samples = [sample(i, [5], [6, 7], reward=reward) for i, reward in enumerate([1.0, 0.0, 0.0])]
    samples[1].status = Status.FAILED
    batch = samples_to_train_batch(args, samples)
    assert [m.tolist() for m in batch.loss_masks] == [[1, 1], [0, 0], [1, 1]]
    assert batch.raw_rewards == [1.0, 0.0, 0.0]
    # GRPO over the two scored samples: mean 0.5, std 0.707 -> +-0.707; the failed one 0.
    assert batch.rewards == pytest.approx([0.7071, 0.0, -0.7071], abs=1e-4)


def slime_convert(args, samples: list[Sample]) -> dict:
    """slime's --custom-convert-samples-to-train-data-path: train only on each response's last token."""
    return {
        "tokens": [s.tokens for s in samples],
        "response_lengths": [s.response_length for s in samples],
        "rewards": [2.0 * s.reward for s in samples],
        "raw_reward": [s.reward for s in samples],
        "loss_masks": [[0] * (s.response_length - 1) + [1] for s in samples],
        "sample_indices": [s.index for s in samples],
    }


def incomplete_convert(args, samples: list[Sample]) -> dict:
    return {"tokens": [s.tokens for s in samples]}


def test_slime_custom_conversion_replaces_ours() -> None:
    from slime.errors import PluginError
    from slime.rollout.train_batch import convert_samples_to_train_batch

    samples = [sample(0, [5, 6], [7, 8, 9], reward=1.0), sample(1, [5], [10, 11], reward=0.0)]
    args = parse_args([*ARGS, "--custom-convert-samples-to-train-data-path", f"{__name__}.slime_convert"])
    batch = convert_samples_to_train_batch(args, samples)
    assert [list(m) for m in batch.loss_masks] == [[0, 0, 1], [0, 1]]
    assert (batch.rewards, batch.raw_rewards, batch.sample_indices) == ([2.0, 0.0], [1.0, 0.0], [0, 1])
    assert [list(t) for t in batch.tokens] == [[5, 6, 7, 8, 9], [5, 10, 11]] and batch.truncated == [False, False]
    args.custom_convert_samples_to_train_data_path = f"{__name__}.incomplete_convert"
    with pytest.raises(PluginError, match="returned train data without response_lengths, rewards, loss_masks"):
        convert_samples_to_train_batch(args, samples)


def test_routing_replay_needs_every_samples_routes() -> None:
    args = parse_args(ARGS)
    args.use_rollout_routing_replay = True  # the flag itself needs an MoE model (the megatron backend checks it)
    routes = np.zeros((3, 4), dtype=np.int32)
    samples = [sample(0, [5, 6], [7, 8], reward=1.0, rollout_routed_experts=routes), sample(1, [5], [9], reward=0.0)]
    with pytest.raises(ValueError, match=r"samples \[1\] carry no routed experts .* not the router"):
        samples_to_train_batch(args, samples)
    samples[1].rollout_routed_experts = routes[:1]
    batch = pickle.loads(pickle.dumps(samples_to_train_batch(args, samples)))
    assert [r.shape for r in batch.rollout_routed_experts] == [(3, 4), (1, 4)]
    assert samples_to_train_batch(parse_args(ARGS), samples).rollout_routed_experts is None  # only when replaying
