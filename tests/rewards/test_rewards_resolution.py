"""slime.rollout.reward: which reward function scores a sample, the boxed_ prefix, reward keys, group rewards, and what a
failing or broken reward function does."""

import argparse
import asyncio

import pytest

from slime.errors import ConfigError, PluginError
from slime.hookspecs import hookimpl
from slime.plugins import register_plugin, unregister_plugin
from slime.rollout.reward import (
    compute_group_rewards,
    compute_reward,
    count_reward_errors,
    last_boxed_answer,
    resolve_reward_function,
    reward_key,
)
from slime.types import Sample, Status

CALLS: list[str] = []


async def says_which(args, sample):
    CALLS.append(sample.response)
    return 0.5


async def per_sample_path(args, sample):
    return 0.25


async def group_path(args, samples):
    return [float(i) for i, _ in enumerate(samples)]


async def raises(args, sample):
    raise ValueError("label\nwas malformed")


async def sleeps(args, sample):
    await asyncio.sleep(5)
    return 1.0


async def returns_text(args, sample):
    return "1.0"


def not_async(args, sample):
    return 1.0


async def returns_dict(args, sample):
    return {"score": -1.0, "acc": False, "pred": "x"}


async def group_too_short(args, samples):
    return [1.0]


class TestRewards:
    @hookimpl
    def slime_register_reward_functions(self, register):
        register("says_which", says_which)
        register("raises", raises)
        register("sleeps", sleeps)
        register("returns_text", returns_text)
        register("not_async", not_async)
        register("returns_dict", returns_dict)


@pytest.fixture(autouse=True)
def test_rewards():
    register_plugin(TestRewards(), "test-resolution-rewards")
    CALLS.clear()
    yield
    unregister_plugin("test-resolution-rewards")


def make_args(**values) -> argparse.Namespace:
    defaults = {"rm_type": None, "custom_rm_path": None, "reward_key": None, "eval_reward_key": None}
    return argparse.Namespace(**(defaults | values))


def score(args, sample, evaluation=False):
    return asyncio.run(compute_reward(args, sample, evaluation))


HERE = __name__


def test_priority_sample_path_then_flag_path_then_metadata_then_flag():
    args = make_args(rm_type="math", custom_rm_path=f"{HERE}.says_which")
    sample = Sample(custom_rm_path=f"{HERE}.per_sample_path", metadata={"rm_type": "f1"})
    assert resolve_reward_function(args, sample).fn is per_sample_path
    sample.custom_rm_path = None
    assert resolve_reward_function(args, sample).fn is says_which
    args.custom_rm_path = None
    assert resolve_reward_function(args, sample).name == "f1"
    sample.metadata = {}
    assert resolve_reward_function(args, sample).name == "math"


def test_names_say_which_plugin_registered_them():
    source = resolve_reward_function(make_args(rm_type="deepscaler"), Sample())
    assert source.describe() == (
        "reward function 'deepscaler' (plugin 'rewards_math' (distribution slime-rewards-math 0.1.0))"
    )


def test_no_reward_function_is_a_config_error():
    with pytest.raises(ConfigError, match="no reward function: set --rm-type"):
        score(make_args(), Sample())


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(PluginError, match=r"unknown reward function 'mth' \(from --rm-type\); registered: .*math"):
        score(make_args(rm_type="mth"), Sample())
    with pytest.raises(PluginError, match=r"unknown reward function 'nope' \(from the sample's metadata rm_type\)"):
        score(make_args(rm_type="math"), Sample(metadata={"rm_type": "nope"}))


def test_a_metadata_rm_type_never_imports_code():
    """The data names a reward function among the installed ones; an import path there is an unknown name, while
    the same path from a flag (the user's choice) is imported."""
    path = f"{HERE}.says_which"
    with pytest.raises(PluginError, match=rf"unknown reward function '{path}' \(from the sample's metadata rm_type\)"):
        resolve_reward_function(make_args(), Sample(metadata={"rm_type": path}))
    with pytest.raises(PluginError, match=r"unknown reward function 'boxed_x.y' \(from the sample's metadata"):
        resolve_reward_function(make_args(), Sample(metadata={"rm_type": "boxed_x.y"}))
    assert resolve_reward_function(make_args(rm_type=path), Sample()).describe() == (
        f"reward function '{path}' (from --rm-type)"
    )


def test_compute_reward_sets_and_returns_the_reward():
    sample = Sample(response=r"\boxed{4}", label="4")
    assert score(make_args(rm_type="math"), sample) == 1.0
    assert sample.reward == 1.0 and sample.status is Status.PENDING


def test_boxed_prefix_scores_only_the_last_boxed_answer():
    sample = Sample(response=r"Paris is big. \boxed{\text{Paris}} or \boxed{Paris}", label="paris")
    assert score(make_args(rm_type="boxed_f1"), sample) == 1.0
    assert score(make_args(rm_type="f1"), sample) < 1.0
    assert sample.response.startswith("Paris is big.")  # the sample keeps its full response
    assert score(make_args(rm_type="boxed_says_which"), Sample(response="no box here")) == 0.5
    assert CALLS == [""]
    assert resolve_reward_function(make_args(rm_type="boxed_f1")).describe().startswith("reward function 'boxed_f1'")


def test_last_boxed_answer():
    assert last_boxed_answer(r"\boxed{1} then \boxed{\frac{a}{b^{2}}}") == r"\frac{a}{b^{2}}"
    assert last_boxed_answer(r"$\boxed 42$ done") == "42"
    assert last_boxed_answer(r"\fbox{x}") == "x"
    assert last_boxed_answer(r"\boxed{unclosed") is None
    assert last_boxed_answer("none") is None


def test_a_raising_reward_function_fails_only_its_sample():
    args = make_args(rm_type="raises")
    samples = [Sample(index=0), Sample(index=1, metadata={"rm_type": "says_which"})]
    assert [score(args, s) for s in samples] == [0.0, 0.5]
    assert samples[0].status is Status.FAILED and samples[0].reward == 0.0
    assert samples[0].metadata["reward_error"] == "ValueError: label was malformed"
    assert samples[1].status is Status.PENDING and "reward_error" not in samples[1].metadata
    assert count_reward_errors(samples) == 1


def test_a_reward_function_past_the_deadline_fails_its_sample():
    sample = Sample()
    assert score(make_args(rm_type="sleeps", reward_timeout=0.1), sample) == 0.0
    assert sample.status is Status.FAILED
    assert sample.metadata["reward_error"] == "TimeoutError: took longer than 0.1 s"


def test_wrong_return_types_are_errors_naming_function_and_plugin():
    with pytest.raises(PluginError) as err:
        score(make_args(rm_type="returns_text"), Sample())
    assert str(err.value) == (
        "reward function 'returns_text' (plugin 'test-resolution-rewards') returned str '1.0'; "
        "a reward function returns a number or a dict of numbers"
    )
    with pytest.raises(PluginError, match=r"'not_async' .* returned float instead of an awaitable; it must be 'async"):
        score(make_args(rm_type="not_async"), Sample())
    with pytest.raises(PluginError, match=r"\.returns_text' \(from --custom-rm-path\) returned str"):
        score(make_args(custom_rm_path=f"{HERE}.returns_text"), Sample())


def test_reward_keys_select_from_dict_rewards():
    args = make_args(rm_type="returns_dict", reward_key="score", eval_reward_key="acc")
    assert reward_key(args) == "score" and reward_key(args, evaluation=True) == "acc"
    sample = Sample()
    assert score(args, sample) == {"score": -1.0, "acc": False, "pred": "x"}
    assert sample.get_reward_value(reward_key(args)) == -1.0
    assert sample.get_reward_value(reward_key(args, evaluation=True)) == 0.0
    assert reward_key(make_args(reward_key="score"), evaluation=True) == "score"  # eval falls back to --reward-key


def test_a_reward_key_the_dict_lacks_is_a_config_error():
    with pytest.raises(ConfigError, match=r"returned a dict with keys \['acc', 'pred', 'score'\]; --reward-key 'sc'"):
        score(make_args(rm_type="returns_dict", reward_key="sc"), Sample())
    with pytest.raises(PluginError, match=r"--eval-reward-key must be a number"):
        score(make_args(rm_type="returns_dict", eval_reward_key="pred"), Sample(), evaluation=True)


def test_group_rewards_with_a_custom_path_get_the_whole_group():
    samples = [Sample(), Sample(), Sample()]
    args = make_args(custom_rm_path=f"{HERE}.group_path")
    assert asyncio.run(compute_group_rewards(args, samples)) == [0.0, 1.0, 2.0]
    assert [s.reward for s in samples] == [0.0, 1.0, 2.0]
    with pytest.raises(PluginError, match="returned 1 values for a group of 3; --group-rm needs one each"):
        asyncio.run(compute_group_rewards(make_args(custom_rm_path=f"{HERE}.group_too_short"), samples))


def test_group_rewards_by_name_score_each_sample():
    samples = [Sample(response=r"\boxed{2}", label="2"), Sample(response=r"\boxed{3}", label="2")]
    assert asyncio.run(compute_group_rewards(make_args(rm_type="math"), samples)) == [1.0, 0.0]


def test_a_failing_group_function_fails_the_whole_group():
    samples = [Sample(), Sample()]
    args = make_args(custom_rm_path=f"{HERE}.raises")
    assert asyncio.run(compute_group_rewards(args, samples)) == [0.0, 0.0]
    assert count_reward_errors(samples) == 2
