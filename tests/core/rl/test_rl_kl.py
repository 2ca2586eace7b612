import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.rl.kl import KL_TYPES, compute_approx_kl


def reference_kl(logp: float, ref: float, kl_type: str, ratio: float | None) -> float:
    d = logp - ref
    if kl_type == "k1":
        kl = d
    elif kl_type == "k2":
        kl = 0.5 * d * d
    else:
        kl = math.exp(ref - logp) - 1.0 - (ref - logp)
    if ratio is not None:
        kl *= ratio
    if kl_type == "low_var_kl":
        kl = min(10.0, max(-10.0, kl))
    return kl


@pytest.mark.parametrize("kl_type", KL_TYPES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_matches_reference(kl_type, unbiased):
    rng = random.Random(0)
    # Wide log ratios so that low_var_kl's clamp is exercised.
    logp = [rng.uniform(-15, 0) for _ in range(200)]
    ref = [rng.uniform(-15, 0) for _ in range(200)]
    old = [rng.uniform(-15, 0) for _ in range(200)]
    ratio = [math.exp(a - b) for a, b in zip(logp, old, strict=True)] if unbiased else None

    got = compute_approx_kl(
        torch.tensor(logp, dtype=torch.float64),
        torch.tensor(ref, dtype=torch.float64),
        kl_type,
        importance_ratio=torch.tensor(ratio, dtype=torch.float64) if unbiased else None,
    )
    expected = [
        reference_kl(a, b, kl_type, ratio[i] if unbiased else None)
        for i, (a, b) in enumerate(zip(logp, ref, strict=True))
    ]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_low_var_kl_is_clamped_and_k3_is_not():
    logp, ref = torch.tensor([-20.0]), torch.tensor([0.0])
    assert compute_approx_kl(logp, ref, "low_var_kl").item() == 10.0
    assert compute_approx_kl(logp, ref, "k3").item() > 1e8


def test_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="k4"):
        compute_approx_kl(torch.zeros(1), torch.zeros(1), "k4")


@given(st.lists(st.floats(-30, 0), min_size=1, max_size=20), st.sampled_from(KL_TYPES))
def test_zero_when_log_probs_are_equal(logp, kl_type):
    x = torch.tensor(logp)
    assert torch.equal(compute_approx_kl(x, x.clone(), kl_type), torch.zeros_like(x))


@given(st.lists(st.tuples(st.floats(-30, 0), st.floats(-30, 0)), min_size=1, max_size=20))
def test_k2_and_k3_are_non_negative(pairs):
    logp = torch.tensor([p for p, _ in pairs], dtype=torch.float64)
    ref = torch.tensor([r for _, r in pairs], dtype=torch.float64)
    for kl_type in ("k2", "k3", "low_var_kl"):
        assert (compute_approx_kl(logp, ref, kl_type) >= 0).all()
