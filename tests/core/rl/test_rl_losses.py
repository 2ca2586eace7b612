import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rl_cases import clamp, make_args, random_samples, run_loss, to_batch, token_weights

from slime.rl.losses import LossBatch, compute_loss, ppo_clip_loss
from slime.rl.reduction import make_reducer

# ---- float64 loop references -------------------------------------------------------------------------------------


def ref_kl(lp, ref, old, kl_type, unbiased):
    d = lp - ref
    kl = d if kl_type == "k1" else 0.5 * d * d if kl_type == "k2" else math.exp(-d) - 1 + d
    if unbiased:
        kl *= math.exp(lp - old)
    return clamp(kl, -10, 10) if kl_type == "low_var_kl" else kl


def ref_kl_grad(lp, ref, old, kl_type, unbiased):
    d = lp - ref
    kl = d if kl_type == "k1" else 0.5 * d * d if kl_type == "k2" else math.exp(-d) - 1 + d
    dkl = 1.0 if kl_type == "k1" else d if kl_type == "k2" else 1 - math.exp(-d)
    if unbiased:
        r = math.exp(lp - old)
        kl, dkl = r * kl, r * kl + r * dkl
    if kl_type == "low_var_kl" and abs(kl) > 10:
        return 0.0
    return dkl


def ref_policy_loss(args, samples, on_policy=False):
    """The policy loss, its metrics and d loss / d log_probs (packed), token by token."""
    eps_low, eps_high = args.eps_clip, args.eps_clip if args.eps_clip_high is None else args.eps_clip_high
    weights = token_weights(samples, args.calculate_per_token_loss)
    names = ["pg_loss", "pg_clipfrac", "ppo_kl", "entropy_loss", "kl_loss", "tis", "tis_clipfrac", "tis_abs", "ois"]
    names.append("train_rollout_logprob_abs_diff")  # the samples always carry the engine's log-probs
    totals = dict.fromkeys(names, 0.0)
    grad = []
    for s, w in zip(samples, weights, strict=True):
        old = s["logp"] if on_policy else s["old"]
        n, mask = len(s["mask"]), s["mask"]
        if args.advantage_estimator == "gspo":
            count = max(sum(mask), 1)
            seq = sum((lp - o) * m for lp, o, m in zip(s["logp"], old, mask, strict=True)) / count
            log_ratios = [seq] * n
        else:
            log_ratios = [lp - o for lp, o in zip(s["logp"], old, strict=True)]
        dloss_dratio = [0.0] * n  # for GSPO's chain rule through the sequence mean
        sample_grad = [0.0] * n
        for t in range(n):
            m, lp, a, r = mask[t], s["logp"][t], s["adv"][t], math.exp(log_ratios[t])
            c = clamp(r, 1 - eps_low, 1 + eps_high)
            if args.advantage_estimator == "cispo":
                pg, clipped, dpg = -c * a * lp, c != r, -c * a
            else:
                unclipped, clipped_term = -r * a, -c * a
                clipped = clipped_term > unclipped
                pg, dpg_dr = max(unclipped, clipped_term), (0.0 if clipped else -a)
                if args.eps_clip_c is not None and a < 0 and -args.eps_clip_c * a < pg:
                    pg, dpg_dr = -args.eps_clip_c * a, 0.0
                dpg = dpg_dr * r
            if args.use_tis:
                raw = math.exp(old[t] - s["rollout"][t])
                tis = clamp(raw, args.tis_clip_low, args.tis_clip)
                pg, dpg = pg * tis, dpg * tis
                totals["tis"] += w * m * raw
                totals["tis_clipfrac"] += w * m * (tis != raw)
                totals["tis_abs"] += w * m * abs(raw - 1)
                totals["ois"] += w * m * r  # slime's ois is the PPO ratio pi / pi_old
            totals["pg_loss"] += w * m * pg
            totals["pg_clipfrac"] += w * m * clipped
            totals["ppo_kl"] += w * m * -log_ratios[t]
            totals["train_rollout_logprob_abs_diff"] += w * m * abs(old[t] - s["rollout"][t])
            totals["entropy_loss"] += w * m * s["entropy"][t]
            if args.advantage_estimator == "gspo":
                dloss_dratio[t] = w * m * dpg
            else:
                sample_grad[t] += w * m * dpg
            if args.use_kl_loss:
                totals["kl_loss"] += w * m * ref_kl(lp, s["ref"][t], old[t], args.kl_loss_type, args.use_unbiased_kl)
                dkl = ref_kl_grad(lp, s["ref"][t], old[t], args.kl_loss_type, args.use_unbiased_kl)
                sample_grad[t] += args.kl_loss_coef * w * m * dkl
        if args.advantage_estimator == "gspo":
            spread = sum(dloss_dratio) / max(sum(mask), 1)
            sample_grad = [g + spread * m for g, m in zip(sample_grad, mask, strict=True)]
        grad.extend(sample_grad)
    loss = totals["pg_loss"] - args.entropy_coef * totals["entropy_loss"] + args.kl_loss_coef * totals["kl_loss"]
    metrics = {**totals, "loss": loss}
    if not args.use_kl_loss:
        del metrics["kl_loss"]
    if not args.use_tis:
        del metrics["tis"], metrics["tis_clipfrac"], metrics["tis_abs"], metrics["ois"]
    return metrics, grad


# ---- policy loss -------------------------------------------------------------------------------------------------

POLICY_CASES = [
    {},
    {"eps_clip_high": 0.28},
    {"eps_clip_c": 3.0, "eps_clip": 0.1},
    {"calculate_per_token_loss": True, "entropy_coef": 0.01},
    {"advantage_estimator": "gspo", "eps_clip": 0.003, "eps_clip_high": 0.004},
    {"advantage_estimator": "cispo", "eps_clip": 0.3, "eps_clip_high": 0.1, "entropy_coef": 0.02},
    {"use_kl_loss": True, "kl_loss_coef": 0.1, "kl_loss_type": "k1"},
    {"use_kl_loss": True, "kl_loss_coef": 0.1, "kl_loss_type": "k2", "use_unbiased_kl": True},
    {"use_kl_loss": True, "kl_loss_coef": 0.5, "kl_loss_type": "k3", "calculate_per_token_loss": True},
    {"use_kl_loss": True, "kl_loss_coef": 1.0, "kl_loss_type": "low_var_kl", "use_unbiased_kl": True},
    {"use_tis": True},
    {"use_tis": True, "tis_clip": 1.2, "tis_clip_low": 0.8, "advantage_estimator": "gspo", "eps_clip": 0.01},
    {"use_tis": True, "tis_clip": 1.5, "tis_clip_low": 0.5, "advantage_estimator": "cispo", "use_kl_loss": True},
]


@pytest.mark.parametrize("overrides", POLICY_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_loss_matches_reference(overrides, seed):
    args = make_args(**overrides)
    samples = random_samples(seed)
    batch, loss, metrics = run_loss(args, samples)
    expected, expected_grad = ref_policy_loss(args, samples)

    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert metrics[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name
        assert not metrics[name].requires_grad
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-9, abs=1e-12)

    # Gradients reach the current log-probs exactly as the reference's chain rule says: importance weights and
    # the CISPO weight are constants, and the rollout log-probs get none at all.
    grad_log_probs, grad_rollout = torch.autograd.grad(
        loss, [batch.log_probs, batch.rollout_log_probs], allow_unused=True
    )
    torch.testing.assert_close(grad_log_probs, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert grad_rollout is None


def test_entropy_bonus_gradient():
    args = make_args(entropy_coef=0.05)
    samples = random_samples(3)
    batch, loss, _ = run_loss(args, samples)
    (grad,) = torch.autograd.grad(loss, [batch.entropy])
    weights = token_weights(samples, per_token=False)
    expected = [-0.05 * w * m for s, w in zip(samples, weights, strict=True) for m in s["mask"]]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("overrides", [{}, {"advantage_estimator": "gspo"}, {"advantage_estimator": "cispo"}])
def test_first_step_is_exactly_on_policy(overrides):
    """With no old log-probs (one step per rollout) or old == current: ppo_kl and clip fraction are exactly 0."""
    args = make_args(use_kl_loss=True, kl_loss_type="low_var_kl", **overrides)
    samples = random_samples(4)
    for s in samples:
        s["ref"] = list(s["logp"])
    _, _, on_policy = run_loss(args, samples, on_policy=True)
    for s in samples:
        s["old"] = list(s["logp"])
    _, _, equal_old = run_loss(args, samples)
    for metrics in (on_policy, equal_old):
        assert metrics["ppo_kl"].item() == 0.0
        assert metrics["pg_clipfrac"].item() == 0.0
        assert metrics["kl_loss"].item() == 0.0


def test_on_policy_gradient_is_the_policy_gradient():
    args = make_args()
    samples = random_samples(5)
    batch, loss, _ = run_loss(args, samples, on_policy=True)
    (grad,) = torch.autograd.grad(loss, [batch.log_probs])
    weights = token_weights(samples, per_token=False)
    expected = [
        -w * m * a for s, w in zip(samples, weights, strict=True) for m, a in zip(s["mask"], s["adv"], strict=True)
    ]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))


@given(
    st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1, max_size=30),
    st.floats(0.01, 0.5),
    st.floats(0.01, 0.5),
    st.one_of(st.none(), st.floats(1.01, 10)),
)
def test_no_clipping_at_ratio_one(rows, eps_clip, eps_clip_high, eps_clip_c):
    advantages = torch.tensor([a for a, _ in rows], dtype=torch.float64)
    losses, clipfrac = ppo_clip_loss(torch.zeros_like(advantages), advantages, eps_clip, eps_clip_high, eps_clip_c)
    assert torch.all(clipfrac == 0)
    if eps_clip_c is None:
        torch.testing.assert_close(losses, -advantages)


def test_dual_clip_must_exceed_one():
    with pytest.raises(ValueError, match="eps-clip-c"):
        ppo_clip_loss(torch.zeros(2), torch.tensor([-1.0, 1.0]), 0.2, 0.2, eps_clip_c=1.0)


def test_missing_inputs_are_named():
    batch = to_batch(random_samples(0))
    batch.rollout_log_probs = None
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, False)
    with pytest.raises(ValueError, match="rollout_log_probs"):
        compute_loss(make_args(use_tis=True), batch, reducer)


# ---- SFT and value losses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_token", [False, True])
def test_sft_loss(per_token):
    args = make_args(loss_type="sft_loss", calculate_per_token_loss=per_token)
    samples = random_samples(6)
    batch, loss, metrics = run_loss(args, samples)
    weights = token_weights(samples, per_token)
    expected = sum(
        -w * m * lp for s, w in zip(samples, weights, strict=True) for m, lp in zip(s["mask"], s["logp"], strict=True)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert metrics == {"loss": pytest.approx(expected, rel=1e-12)}
    (grad,) = torch.autograd.grad(loss, [batch.log_probs])
    expected_grad = [-w * m for s, w in zip(samples, weights, strict=True) for m in s["mask"]]
    torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64))


@pytest.mark.parametrize("value_clip", [0.05, 0.2, 10.0])
@pytest.mark.parametrize("per_token", [False, True])
def test_value_loss(value_clip, per_token):
    """slime's value_loss_function: max of the squared errors (no 1/2), clipfrac = |v - old| > value_clip."""
    args = make_args(loss_type="value_loss", value_clip=value_clip, calculate_per_token_loss=per_token)
    samples = random_samples(7)
    batch, loss, metrics = run_loss(args, samples)
    weights = token_weights(samples, per_token)
    total = clipfrac = 0.0
    grad = []
    for s, w in zip(samples, weights, strict=True):
        for m, v, old, ret in zip(s["mask"], s["values"], s["old_values"], s["returns"], strict=True):
            clipped_v = old + clamp(v - old, -value_clip, value_clip)
            clipped_wins = (clipped_v - ret) ** 2 > (v - ret) ** 2
            total += w * m * max((v - ret) ** 2, (clipped_v - ret) ** 2)
            clipfrac += w * m * (abs(v - old) > value_clip)
            moves = abs(v - old) < value_clip
            grad.append(w * m * 2 * ((clipped_v - ret) * moves if clipped_wins else v - ret))
    assert set(metrics) == {"value_loss", "value_clipfrac"}
    assert loss.item() == pytest.approx(total, rel=1e-12)
    assert metrics["value_loss"].item() == pytest.approx(total, rel=1e-12)
    assert metrics["value_clipfrac"].item() == pytest.approx(clipfrac, rel=1e-12, abs=1e-15)
    (got_grad,) = torch.autograd.grad(loss, [batch.values])
    torch.testing.assert_close(got_grad, torch.tensor(grad, dtype=torch.float64))
    if value_clip == 10.0:
        assert metrics["value_clipfrac"].item() == 0.0
    else:
        assert metrics["value_clipfrac"].item() > 0.0


def test_value_loss_gradcheck():
    """Autograd's gradient of the clipped value loss agrees with finite differences (away from the clip kinks)."""
    samples = random_samples(8)
    batch = to_batch(samples)
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, False)
    values = batch.values.detach().clone().requires_grad_(True)
    old_values, returns = batch.old_values, batch.returns

    def loss_of(v):
        return compute_loss(
            make_args(loss_type="value_loss", value_clip=0.1),
            LossBatch(batch.response_lengths, batch.loss_masks, values=v, old_values=old_values, returns=returns),
            reducer,
        )[0]

    assert torch.autograd.gradcheck(loss_of, (values,), eps=1e-7, atol=1e-6)
