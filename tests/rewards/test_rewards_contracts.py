"""slime.testing.contracts: each check passes a well-behaved plugin and names what a misbehaving one broke."""

import argparse
import asyncio
import statistics
from dataclasses import dataclass

import pytest

from slime.testing.contracts import (
    ContractError,
    check_metric_sink,
    check_reward_function,
    check_rollout_function,
    check_sample_filter,
)
from slime.types import Sample, Status


def scored_group(*rewards: float, group_index: int = 0) -> list[Sample]:
    return [
        Sample(
            group_index=group_index,
            index=i,
            prompt="p",
            tokens=[1, 2, 3],
            response="r",
            response_length=1,
            loss_mask=[1],
            rollout_log_probs=[-0.5],
            label="4",
            reward=r,
            status=Status.COMPLETED,
        )
        for i, r in enumerate(rewards)
    ]


ARGS = argparse.Namespace(rm_type=None, reward_key=None, rollout_batch_size=2, n_samples_per_prompt=2)

# --- reward functions


async def good_reward(args, sample):
    return 1.0 if sample.label in sample.response else 0.0


def sync_reward(args, sample):
    return 1.0


async def one_argument(sample):
    return 1.0


async def changes_label(args, sample):
    sample.label = "5"
    return 1.0


async def changes_args(args, sample):
    args.rm_type = "mine"
    return 1.0


async def returns_list(args, sample):
    return [1.0]


async def returns_coroutine(args, sample):
    return good_reward(args, sample)


async def notes_metadata(args, sample):
    sample.metadata["seen"] = True
    return 0.0


async def good_group_reward(args, samples):
    return [1.0] * len(samples)


def test_a_good_reward_function_passes_and_its_rewards_come_back():
    samples = [Sample(response="it is 4", label="4"), Sample(response="5", label="4")]
    assert check_reward_function(good_reward, samples, ARGS) == [1.0, 0.0]
    assert check_reward_function(good_group_reward, samples, ARGS, group=True) == [1.0, 1.0]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (sync_reward, r"reward function .*sync_reward is not async; reward functions are 'async def f\(args, sample\)"),
        (one_argument, r"one_argument cannot be called as async def f\(args, sample\) -> float \| dict: too many"),
        (changes_label, r"changes_label changed sample 0: 'label' from '4' to '5'; a reward function only reads"),
        (changes_args, r"changes_args changed args \(rm_type\); args are shared by every call"),
        (
            returns_list,
            r"returns_list returned list \[1.0\] for sample 0; a reward function returns a number or a dict",
        ),
        (returns_coroutine, r"returns_coroutine returned an awaitable for sample 0; await inside it"),
        (notes_metadata, r"notes_metadata changed sample 0: 'metadata' from \{\} to \{'seen': True\}"),
    ],
)
def test_reward_contract_violations_are_named(fn, message):
    with pytest.raises(ContractError, match=message):
        check_reward_function(fn, [Sample(response="4", label="4")], argparse.Namespace(**vars(ARGS)))


def test_fields_a_reward_may_write_can_be_allowed():
    assert check_reward_function(notes_metadata, [Sample()], ARGS, may_modify=["metadata"]) == [0.0]


def test_group_rewards_must_return_one_per_sample():
    with pytest.raises(ContractError, match="returned 1 rewards for a group of 2; it must return one per sample"):
        check_reward_function(returns_list, [Sample(), Sample()], ARGS, group=True)


def test_reward_checks_work_from_inside_a_running_loop():
    async def inside():
        return check_reward_function(good_reward, [Sample(response="4", label="4")], ARGS)

    assert asyncio.run(inside()) == [1.0]


# --- sample filters


@dataclass
class Verdict:
    keep: bool
    reason: str | None = None


def std_filter(args, group):
    return statistics.pstdev(s.reward for s in group) > 0


def std_filter_with_reason(args, group):
    keep = statistics.pstdev(s.reward for s in group) > 0
    return Verdict(keep, None if keep else "zero_std")


async def async_filter(args, group):
    return True


def drops_silently(args, group):
    return Verdict(False)


def pops_a_sample(args, group):
    group.pop()
    return True


def zeroes_rewards(args, group):
    for sample in group:
        sample.reward = 0.0
    return True


def returns_string(args, group):
    return "keep"


def test_good_filters_pass_and_their_verdicts_come_back():
    groups = [scored_group(1.0, 0.0), scored_group(1.0, 1.0)]
    assert check_sample_filter(std_filter, groups, ARGS) == [True, False]
    assert check_sample_filter(std_filter_with_reason, groups, ARGS) == [Verdict(True), Verdict(False, "zero_std")]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (async_filter, r"async_filter is async; sample filters are plain functions"),
        (drops_silently, r"drops_silently dropped group 0 with reason=None; a drop needs a non-empty string reason"),
        (pops_a_sample, r"pops_a_sample changed the size of group 0 from 2 to 1"),
        (zeroes_rewards, r"zeroes_rewards \(group 0\) changed sample 0: 'reward' from 1.0 to 0.0"),
        (returns_string, r"returns_string returned str 'keep' for group 0; it must return a bool or an object"),
    ],
)
def test_filter_contract_violations_are_named(fn, message):
    with pytest.raises(ContractError, match=message):
        check_sample_filter(fn, [scored_group(1.0, 0.0)], ARGS)


# --- rollout functions


class ListSource:
    def __init__(self, prompts):
        self.prompts = list(prompts)

    def get_samples(self, n):
        taken, self.prompts = self.prompts[:n], self.prompts[n:]
        return taken


@dataclass
class TrainOutput:
    samples: list
    metrics: dict | None = None


def toy_rollout(args, rollout_id, data_source, evaluation=False):
    if evaluation:
        samples = scored_group(1.0, 0.0, 1.0)
        return {"toy": {"rewards": [s.reward for s in samples], "truncated": [False] * 3, "samples": samples}}
    groups = [scored_group(1.0, 0.0, group_index=g) for g, _ in enumerate(data_source.get_samples(2))]
    return TrainOutput(groups, {"rollout/toy": 1.0})


async def async_toy_rollout(args, rollout_id, data_source, evaluation=False):
    return toy_rollout(args, rollout_id, data_source, evaluation).samples  # the bare list slime also accepts


def rollout_without_evaluation(args, rollout_id, data_source):
    return []


def unscored_rollout(args, rollout_id, data_source, evaluation=False):
    groups = toy_rollout(args, rollout_id, data_source).samples
    groups[1][0].reward = None
    return groups


def misaligned_rollout(args, rollout_id, data_source, evaluation=False):
    groups = toy_rollout(args, rollout_id, data_source).samples
    groups[0][1].loss_mask = [1, 1]
    return groups


def pending_rollout(args, rollout_id, data_source, evaluation=False):
    groups = toy_rollout(args, rollout_id, data_source).samples
    groups[0][0].status = Status.PENDING
    return groups


def mixed_group_rollout(args, rollout_id, data_source, evaluation=False):
    groups = toy_rollout(args, rollout_id, data_source).samples
    groups[0][0].group_index = 7
    return groups


def ragged_eval_rollout(args, rollout_id, data_source, evaluation=False):
    data = toy_rollout(args, rollout_id, data_source, evaluation=True)
    data["toy"]["truncated"].pop()
    return data


def test_good_rollout_functions_pass_and_their_output_comes_back():
    output = check_rollout_function(toy_rollout, ARGS, ListSource("abcd"), expected_groups=2)
    assert output.metrics == {"rollout/toy": 1.0} and len(output.samples) == 2
    assert len(check_rollout_function(async_toy_rollout, ARGS, ListSource("abcd"), expected_groups=2)) == 2
    evaluated = check_rollout_function(toy_rollout, ARGS, ListSource("ab"), evaluation=True)
    assert list(evaluated) == ["toy"]


@pytest.mark.parametrize(
    ("fn", "kwargs", "message"),
    [
        (rollout_without_evaluation, {}, r"cannot be called as f\(args, rollout_id, data_source, evaluation=False\)"),
        (toy_rollout, {"expected_groups": 3}, r"toy_rollout returned 2 groups; expected 3"),
        (unscored_rollout, {}, r"returned sample 0 of group 1 without a reward"),
        (misaligned_rollout, {}, r"sample 1 of group 0 with 2 loss_mask entries for response_length 1"),
        (pending_rollout, {}, r"sample 0 of group 0 with status PENDING"),
        (mixed_group_rollout, {}, r"returned group 0 mixing group_index values \[0, 7\]"),
        (ragged_eval_rollout, {"evaluation": True}, r"eval dataset 'toy' with lists of different lengths"),
    ],
)
def test_rollout_contract_violations_are_named(fn, kwargs, message):
    with pytest.raises(ContractError, match=message):
        check_rollout_function(fn, ARGS, ListSource("abcd"), **kwargs)


# --- metric sinks


class RecordingSink:
    def __init__(self):
        self.rows, self.finished = [], False

    def log(self, metrics, step_key):
        self.rows.append((step_key, metrics[step_key], dict(metrics)))

    def finish(self):
        self.finished = True


class PoppingSink(RecordingSink):
    def log(self, metrics, step_key):
        metrics.pop(step_key)


class AsyncSink(RecordingSink):
    async def log(self, metrics, step_key):
        pass


class NoFinishSink:
    def log(self, metrics, step_key):
        pass


class OneArgumentSink(RecordingSink):
    def log(self, metrics):
        pass


def test_a_good_metric_sink_passes():
    sink = RecordingSink()
    check_metric_sink(sink)
    assert [row[0] for row in sink.rows] == ["train/step", "rollout/step", "eval/step", "train/step"]
    assert sink.finished


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        (PoppingSink(), r"PoppingSink.log changed the metrics it was given"),
        (AsyncSink(), r"AsyncSink.log is async; slime calls sinks synchronously"),
        (NoFinishSink(), r"NoFinishSink has no method finish\(\)"),
        (OneArgumentSink(), r"OneArgumentSink.log cannot be called as log\(metrics, step_key\)"),
    ],
)
def test_metric_sink_contract_violations_are_named(sink, message):
    with pytest.raises(ContractError, match=message):
        check_metric_sink(sink)
