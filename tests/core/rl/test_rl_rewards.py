import argparse
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.rl.reward_normalization import group_normalize, postprocess_rewards


def reference_group_normalize(rewards, n, scale):
    out = []
    for start in range(0, len(rewards), n):
        group = rewards[start : start + n]
        mean = sum(group) / n
        std = statistics.stdev(group) if scale else None
        out.extend((r - mean) / (std + 1e-6) if scale else r - mean for r in group)
    return out


def make_args(estimator="grpo", n=4, disable_std=False, disable_norm=False):
    return argparse.Namespace(
        advantage_estimator=estimator,
        n_samples_per_prompt=n,
        disable_grpo_std_normalization=disable_std,
        disable_rewards_normalization=disable_norm,
    )


@pytest.mark.parametrize("scale", [False, True])
def test_group_normalize_matches_reference(scale):
    rng = random.Random(1)
    rewards = [rng.choice([0.0, 1.0, rng.uniform(-2, 2)]) for _ in range(48)]
    rewards[:8] = [1.0] * 8  # constant groups normalise to zeros, not NaN
    assert group_normalize(rewards, 8, scale) == pytest.approx(reference_group_normalize(rewards, 8, scale), abs=1e-9)


@pytest.mark.parametrize(
    ("estimator", "disable_std", "disable_norm", "n", "expected"),
    [
        ("grpo", False, False, 4, "scaled"),
        ("gspo", False, False, 4, "scaled"),
        ("cispo", False, False, 4, "scaled"),
        ("grpo", True, False, 4, "centred"),
        ("grpo", False, False, 1, "centred"),  # std of one sample is undefined: scaling switches off
        ("reinforce_plus_plus_baseline", False, False, 4, "centred"),
        ("grpo", False, True, 4, "raw"),
        ("reinforce_plus_plus", False, False, 4, "raw"),
        ("ppo", False, False, 4, "raw"),
    ],
)
def test_postprocess_follows_estimator_and_flags(estimator, disable_std, disable_norm, n, expected):
    rng = random.Random(2)
    rewards = [rng.uniform(-1, 2) for _ in range(4 * n)]
    got = postprocess_rewards(make_args(estimator, n, disable_std, disable_norm), rewards)
    if expected == "raw":
        assert got == rewards
    else:
        assert got == pytest.approx(reference_group_normalize(rewards, n, expected == "scaled"), abs=1e-9)


@given(st.integers(2, 8).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.floats(-5, 5), min_size=n, max_size=n))))
def test_grpo_rewards_have_zero_group_mean_and_unit_std(n_and_group):
    n, group = n_and_group
    rewards = group * 2
    out = postprocess_rewards(make_args("grpo", n), rewards)
    for start in range(0, len(out), n):
        chunk = out[start : start + n]
        assert abs(sum(chunk) / n) < 1e-6
        std = statistics.stdev(group)
        if std > 1e-3:
            assert statistics.stdev(chunk) == pytest.approx(std / (std + 1e-6), rel=1e-6)


def test_bad_group_size_is_an_error():
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalize([0.0] * 4, 3, scale_by_std=False)


@pytest.mark.parametrize("scale", [False, True])
def test_group_normalize_leaves_out_invalid_rewards(scale):
    """A sample whose reward failed is left out of its group's mean and std, and gets 0."""
    rewards = [1.0, 0.0, 0.0, 1.0, 0.5, 2.0, 0.0, 0.0]
    valid = [True, False, True, True, True, False, False, False]
    got = group_normalize(rewards, 4, scale, valid)
    first = reference_group_normalize([1.0, 0.0, 1.0], 3, scale)  # the group without its failed sample
    assert got[:4] == pytest.approx([first[0], 0.0, first[1], first[2]], abs=1e-9)
    assert got[4:] == pytest.approx([0.0, 0.0, 0.0, 0.0], abs=1e-9)  # one valid sample: nothing to compare with
    # All valid: exactly what no mask gives.
    assert group_normalize(rewards, 4, scale, [True] * 8) == group_normalize(rewards, 4, scale)
