import random
from itertools import pairwise
from math import prod

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.rl.pass_at_k import group_pass_at_k, pass_at_k


def reference(rewards, n, success=lambda r: r >= 1):
    """The product form of the unbiased estimator, averaged over prompt groups."""
    out = {}
    k = 1
    while k <= n:
        values = []
        for start in range(0, len(rewards), n):
            c = sum(1 for r in rewards[start : start + n] if success(r))
            values.append(1.0 if n - c < k else 1.0 - prod(1.0 - k / i for i in range(n - c + 1, n + 1)))
        out[k] = sum(values) / len(values)
        k *= 2
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 8, 12, 16])
def test_matches_reference(n):
    rng = random.Random(n)
    rewards = [float(rng.random() < 0.3) for _ in range(5 * n)]
    got = pass_at_k(rewards, n)
    expected = reference(rewards, n)
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-12)


def test_ks_are_powers_of_two_up_to_n():
    assert list(pass_at_k([0.0] * 12, 12)) == [1, 2, 4, 8]
    assert list(pass_at_k([0.0] * 16, 16)) == [1, 2, 4, 8, 16]


def test_group_size_is_per_dataset():
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    # The same rewards read as 3 prompts of 2 samples or 2 prompts of 3 samples.
    assert pass_at_k(rewards, 2)[2] == pytest.approx((1 + 0 + 1) / 3)
    assert pass_at_k(rewards, 3)[2] == pytest.approx((1 - 1 / 3 + 1) / 2)


def test_dapo_rewards_and_custom_success():
    dapo = [1.0, -1.0, -1.0, -1.0]
    assert pass_at_k(dapo, 4)[1] == pytest.approx(0.25)
    assert pass_at_k([1.5, 0.5], 2)[1] == pytest.approx(0.5)  # a reward above 1 (e.g. with a bonus) succeeds too
    partial = [0.6, 0.2, 0.9, 0.1]
    assert pass_at_k(partial, 4)[1] == 0.0
    assert pass_at_k(partial, 4, success=lambda r: r > 0.5)[1] == pytest.approx(0.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="groups of 4"):
        pass_at_k([1.0] * 6, 4)
    with pytest.raises(ValueError):
        pass_at_k([], 4)
    with pytest.raises(ValueError, match="k must be"):
        group_pass_at_k(4, 1, 5)


@given(st.integers(1, 20).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.booleans(), min_size=n, max_size=3 * n))))
def test_monotone_in_k_and_success_rate_at_one(n_and_outcomes):
    n, outcomes = n_and_outcomes
    outcomes = outcomes[: len(outcomes) // n * n]
    rewards = [1.0 if ok else 0.0 for ok in outcomes]
    got = pass_at_k(rewards, n)
    assert got[1] == pytest.approx(sum(outcomes) / len(outcomes), abs=1e-12)
    values = list(got.values())
    assert all(0 <= v <= 1 for v in values)
    assert all(a <= b + 1e-12 for a, b in pairwise(values))
    for c in range(n + 1):
        group = [group_pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert all(a <= b + 1e-12 for a, b in pairwise(group))
