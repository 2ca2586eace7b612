"""OPSM (slime's compute_opsm_mask) against a float64 loop, through the policy loss."""

import math

import pytest
import torch
from rl_cases import clamp, make_args, random_samples, run_loss, token_weights


def ref_opsm(samples, delta, per_token):
    """(pg_loss, opsm_clipfrac, d pg_loss / d log_probs) with OPSM, token by token."""
    pg = clipfrac = 0.0
    grad = []
    for s, w in zip(samples, token_weights(samples, per_token), strict=True):
        mask = s["mask"]
        seq_kl = sum((o - lp) * m for o, lp, m in zip(s["old"], s["logp"], mask, strict=True)) / max(sum(mask), 1)
        for t, m in enumerate(mask):
            a = s["adv"][t]
            keep = 0.0 if (a < 0 and seq_kl > delta) else 1.0
            r = math.exp(s["logp"][t] - s["old"][t])
            c = clamp(r, 0.8, 1.2)
            clipped = -c * a > -r * a
            pg += w * m * keep * max(-r * a, -c * a)
            clipfrac += w * m * (1.0 - keep)
            grad.append(w * m * keep * (0.0 if clipped else -a * r))
    return pg, clipfrac, grad


@pytest.mark.parametrize("delta", [1e-4, 0.05, 10.0])
@pytest.mark.parametrize("per_token", [False, True])
def test_opsm_matches_reference(delta, per_token):
    args = make_args(use_opsm=True, opsm_delta=delta, calculate_per_token_loss=per_token)
    samples = random_samples(11, num_samples=12)
    batch, loss, metrics = run_loss(args, samples)
    pg, clipfrac, grad = ref_opsm(samples, delta, per_token)
    assert metrics["pg_loss"].item() == pytest.approx(pg, rel=1e-9, abs=1e-12)
    assert metrics["opsm_clipfrac"].item() == pytest.approx(clipfrac, rel=1e-9, abs=1e-12)
    (got,) = torch.autograd.grad(loss, [batch.log_probs])
    torch.testing.assert_close(got, torch.tensor(grad, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    if delta == 1e-4:
        assert clipfrac > 0  # the case masks some sequences
    if delta == 10.0:
        assert clipfrac == 0.0


def test_opsm_keeps_everything_on_policy():
    """On a rollout's first step the policy has not moved (KL 0 <= delta): OPSM changes nothing."""
    samples = random_samples(12)
    _, plain, _ = run_loss(make_args(), samples, on_policy=True)
    _, opsm, metrics = run_loss(make_args(use_opsm=True), samples, on_policy=True)
    assert opsm.item() == plain.item()
    assert metrics["opsm_clipfrac"].item() == 0.0
