"""--get-mismatch-metrics: slime's train-vs-rollout statistics (mis.py's add_ppl_metrics), against float64 loops."""

import math
import random

import pytest
import torch
from rl_cases import make_args, run_loss, token_weights

from slime.rl.mismatch import mismatch_metrics

MISMATCH_NAMES = {
    "mis_training_log_ppl",
    "mis_training_ppl",
    "mis_rollout_log_ppl",
    "mis_rollout_ppl",
    "mis_kl",
    "mis_k3_kl",
    "mis_log_ppl_diff",
    "mis_log_ppl_abs_diff",
    "mis_ppl_ratio",
    "mis_chi2_token",
    "mis_chi2_seq",
}


def samples_with_gap(seed, scale, num_samples=6, max_len=20):
    """``old`` = the trainer's log-probs of the rollout policy; ``rollout`` = the engine's, ``scale`` x noise away."""
    rng = random.Random(seed)
    samples = []
    for _ in range(num_samples):
        n = rng.randint(1, max_len)
        old = [rng.uniform(-3, -0.05) for _ in range(n)]
        samples.append(
            {
                "mask": [int(rng.random() < 0.8) for _ in range(n)],
                "logp": [x + rng.gauss(0, 0.05) for x in old],
                "old": old,
                "ref": list(old),
                "rollout": [x + scale * rng.gauss(0, 1) for x in old],
                "adv": [rng.gauss(0, 1) for _ in range(n)],
                "entropy": [1.0] * n,
                "values": [0.0] * n,
                "old_values": [0.0] * n,
                "returns": [0.0] * n,
            }
        )
    samples[1]["mask"] = [0] * len(samples[1]["mask"])
    return samples


def ref_mismatch_tokens(train, rollout, mask):
    """slime's per-token values of one sample (sequence statistics repeated on each token)."""
    n, count = len(mask), max(sum(mask), 1)
    mean_train = sum(t * m for t, m in zip(train, mask, strict=True)) / count
    mean_rollout = sum(r * m for r, m in zip(rollout, mask, strict=True)) / count
    log_ratio = [t - r for t, r in zip(train, rollout, strict=True)]
    diff = mean_rollout - mean_train
    rho2 = sum(math.exp(2 * min(max(x, -20), 20)) * m for x, m in zip(log_ratio, mask, strict=True)) / count
    seq = min(max(sum(x * m for x, m in zip(log_ratio, mask, strict=True)), -20), 20)
    return {
        "mis_training_log_ppl": [-mean_train] * n,
        "mis_training_ppl": [math.exp(-mean_train)] * n,
        "mis_rollout_log_ppl": [-mean_rollout] * n,
        "mis_rollout_ppl": [math.exp(-mean_rollout)] * n,
        "mis_kl": [-x for x in log_ratio],
        "mis_k3_kl": [math.exp(x) - x - 1 for x in log_ratio],
        "mis_log_ppl_diff": [diff] * n,
        "mis_log_ppl_abs_diff": [abs(diff)] * n,
        "mis_ppl_ratio": [math.exp(diff)] * n,
        "mis_chi2_token": [rho2 - 1] * n,
        "mis_chi2_seq": [math.exp(2 * seq) - 1] * n,
    }


def ref_reduced(samples, per_token, train_key="old"):
    """Every mismatch metric reduced as the loss reduces (per sample, or per token), plus ois and the abs diff."""
    totals = dict.fromkeys([*MISMATCH_NAMES, "ois", "train_rollout_logprob_abs_diff"], 0.0)
    for s, w in zip(samples, token_weights(samples, per_token), strict=True):
        tokens = ref_mismatch_tokens(s[train_key], s["rollout"], s["mask"])
        tokens["ois"] = [math.exp(lp - o) for lp, o in zip(s["logp"], s["old"], strict=True)]
        tokens["train_rollout_logprob_abs_diff"] = [abs(o - r) for o, r in zip(s["old"], s["rollout"], strict=True)]
        for name, values in tokens.items():
            totals[name] += w * sum(v * m for v, m in zip(values, s["mask"], strict=True))
    return totals


@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_mismatch_metrics_match_reference(per_token, seed):
    samples = samples_with_gap(seed, scale=0.3)
    args = make_args(get_mismatch_metrics=True, calculate_per_token_loss=per_token)
    _, _, metrics = run_loss(args, samples)
    expected = ref_reduced(samples, per_token)
    assert MISMATCH_NAMES | {"ois"} <= set(metrics)
    for name, value in expected.items():
        assert metrics[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_mismatch_metrics_leave_the_loss_and_its_gradient_alone():
    samples = samples_with_gap(2, scale=0.5)
    batch, loss, _ = run_loss(make_args(), samples)
    batch_m, loss_m, _ = run_loss(make_args(get_mismatch_metrics=True), samples)
    assert loss_m.item() == loss.item()
    (grad,) = torch.autograd.grad(loss, [batch.log_probs])
    (grad_m, grad_rollout) = torch.autograd.grad(
        loss_m, [batch_m.log_probs, batch_m.rollout_log_probs], allow_unused=True
    )
    torch.testing.assert_close(grad_m, grad)
    assert grad_rollout is None


def test_zero_when_engine_and_trainer_agree_and_growing_with_the_gap():
    """The issue's check in miniature: ~0 with identical log-probs, larger with every step of perturbation."""
    gaps = {}
    for scale in (0.0, 0.01, 0.1, 0.5):
        _, _, metrics = run_loss(make_args(get_mismatch_metrics=True), samples_with_gap(3, scale))
        gaps[scale] = {name: value.item() for name, value in metrics.items()}
    agree = gaps[0.0]
    for name in ("mis_kl", "mis_k3_kl", "mis_log_ppl_diff", "mis_log_ppl_abs_diff", "mis_chi2_token", "mis_chi2_seq"):
        assert agree[name] == pytest.approx(0.0, abs=1e-12), name
    assert agree["train_rollout_logprob_abs_diff"] == 0.0
    # A ratio of 1 on every trained token; the fully masked sample adds 0 to the per-sample mean.
    samples = samples_with_gap(3, 0.0)
    trained = sum(any(s["mask"]) for s in samples) / len(samples)
    assert agree["mis_ppl_ratio"] == pytest.approx(trained, abs=1e-12)
    assert agree["mis_training_ppl"] == pytest.approx(agree["mis_rollout_ppl"], rel=1e-12)
    for name in ("train_rollout_logprob_abs_diff", "mis_k3_kl", "mis_chi2_token", "mis_chi2_seq"):
        series = [gaps[scale][name] for scale in (0.0, 0.01, 0.1, 0.5)]
        assert series == sorted(series) and series[-1] > series[1] > 0, (name, series)


def test_per_token_values_without_a_loss():
    """The function alone, on an unreduced packed batch: every token carries slime's value."""
    samples = samples_with_gap(4, scale=0.2)
    lengths = [len(s["mask"]) for s in samples]
    packed = {k: torch.tensor([x for s in samples for x in s[k]], dtype=torch.float64) for k in ("old", "rollout")}
    mask = torch.tensor([m for s in samples for m in s["mask"]])
    got = mismatch_metrics(packed["old"], packed["rollout"], mask, lengths)
    assert set(got) == MISMATCH_NAMES
    expected = {name: [] for name in MISMATCH_NAMES}
    for s in samples:
        for name, values in ref_mismatch_tokens(s["old"], s["rollout"], s["mask"]).items():
            expected[name].extend(values)
    for name in MISMATCH_NAMES:
        torch.testing.assert_close(got[name], torch.tensor(expected[name], dtype=torch.float64), rtol=1e-12, atol=1e-12)
