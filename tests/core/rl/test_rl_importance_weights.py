"""icepop and MIS (slime's icepop_function and examples/train_infer_mismatch_helper/mis.py), against float64 loops
written from those definitions, and through the policy loss (values, denominators, gradients)."""

import math

import pytest
import torch
from rl_cases import clamp, make_args, run_loss, to_batch, token_weights
from test_rl_mismatch import ref_mismatch_tokens, samples_with_gap

from slime.rl.losses import compute_loss
from slime.rl.mis import mis
from slime.rl.reduction import make_reducer

MIS_DEFAULTS = {
    "tis_mode": "truncate",
    "tis_level": "token",
    "tis_lower_bound": None,
    "tis_upper_bound": 2.0,
    "tis_batch_normalize": False,
    "use_rs": False,
    "rs_level": "token",
    "rs_lower_bound": None,
    "rs_upper_bound": None,
    "rs_veto_threshold": None,
}


def mis_args(**overrides):
    return make_args(**{"use_tis": True, "custom_tis_function_path": "mis", **MIS_DEFAULTS, **overrides})


# ---- float64 loop references -------------------------------------------------------------------------------------


def level(log_ratio, mask, kind):
    if kind == "token":
        return list(log_ratio)
    total = sum(x * m for x, m in zip(log_ratio, mask, strict=True))
    if kind == "geometric":
        total /= max(sum(mask), 1)
    return [total] * len(mask)


def bounded_exp(xs):
    return [math.exp(clamp(x, -20, 20)) for x in xs]


def ref_mis(args, samples):
    """Per sample: the final weight and kept mask of each token, and slime's per-token metric values."""
    upper = args.tis_upper_bound
    lower = args.tis_lower_bound if args.tis_lower_bound is not None else 1 / upper
    rs_upper = args.rs_upper_bound if args.rs_upper_bound is not None else upper
    rs_lower = args.rs_lower_bound if args.rs_lower_bound is not None else lower
    out = []
    for s in samples:
        mask, n = s["mask"], len(s["mask"])
        log_ratio = [o - r for o, r in zip(s["old"], s["rollout"], strict=True)]
        metrics = ref_mismatch_tokens(s["old"], s["rollout"], mask)
        raw = bounded_exp(level(log_ratio, mask, args.tis_level))
        metrics["mis_tis_weight_before_bound"] = raw
        keep = list(mask)
        if args.tis_mode == "truncate":
            metrics["mis_tis_truncate_fraction"] = [float(w > upper) for w in raw]
            weights = [clamp(w, 0, upper) * m for w, m in zip(raw, mask, strict=True)]
        elif args.tis_mode == "clip":
            metrics["mis_tis_clip_fraction_low"] = [float(w < lower) for w in raw]
            metrics["mis_tis_clip_fraction_high"] = [float(w > upper) for w in raw]
            weights = [clamp(w, lower, upper) * m for w, m in zip(raw, mask, strict=True)]
        else:
            metrics["mis_tis_mask_fraction_low"] = [float(w < lower) for w in raw]
            metrics["mis_tis_mask_fraction_high"] = [float(w > upper) for w in raw]
            keep = [k * (lower <= w <= upper) for k, w in zip(keep, raw, strict=True)]
            weights = [w * m for w, m in zip(raw, mask, strict=True)]
        metrics["mis_tis_weight_after_bound"] = list(weights)
        if args.use_rs:
            rs = bounded_exp(level(log_ratio, mask, args.rs_level))
            metrics["mis_rs_mask_fraction_low"] = [float(w < rs_lower) for w in rs]
            metrics["mis_rs_mask_fraction_high"] = [float(w > rs_upper) for w in rs]
            keep = [k * (rs_lower <= w <= rs_upper) for k, w in zip(keep, rs, strict=True)]
            if args.rs_veto_threshold is not None:
                bad = [float(x < math.log(args.rs_veto_threshold) and m) for x, m in zip(log_ratio, mask, strict=True)]
                vetoed = float(any(bad))
                metrics["mis_rs_catastrophic_token_fraction"] = bad
                metrics["mis_rs_catastrophic_seq_fraction"] = [vetoed] * n
                keep = [k * (1 - vetoed) for k in keep]
        metrics["mis_is_ratio_mean_after_tis_rs"] = list(weights)
        out.append({"weights": weights, "keep": keep, "metrics": metrics})

    if args.tis_batch_normalize:
        masks = [s["mask"] for s in samples]
        if args.tis_level == "token":
            mean = sum(w * m for o, mk in zip(out, masks, strict=True) for w, m in zip(o["weights"], mk, strict=True))
            mean /= max(sum(sum(mk) for mk in masks), 1)
        else:
            means = [
                sum(w * m for w, m in zip(o["weights"], mk, strict=True)) / max(sum(mk), 1)
                for o, mk in zip(out, masks, strict=True)
            ]
            mean = sum(means) / len(means)
        for o in out:
            factor = mean if mean > 1e-8 else 1.0
            if mean > 1e-8:
                o["weights"] = [w / mean for w in o["weights"]]
            o["metrics"]["mis_batch_norm_factor"] = [factor] * len(o["weights"])

    for s, o in zip(samples, out, strict=True):
        mask, w, n = s["mask"], o["weights"], len(s["mask"])
        kept = [x for x, m in zip(w, mask, strict=True) if m]
        o["metrics"]["mis_is_ratio_mean_final"] = [sum(kept) / max(sum(mask), 1)] * n
        o["metrics"]["mis_is_ratio_min_final"] = [min(kept) if kept else 0.0] * n
        o["metrics"]["mis_is_ratio_max_final"] = [max(kept) if kept else 0.0] * n
    return out


MIS_CASES = [
    {},
    {"tis_mode": "clip", "tis_lower_bound": 0.5},
    {"tis_mode": "mask", "tis_upper_bound": 1.5},
    {"tis_level": "sequence", "tis_mode": "clip"},
    {"tis_level": "geometric", "tis_mode": "mask", "tis_lower_bound": 0.9, "tis_upper_bound": 1.1},
    {"use_rs": True},
    {"use_rs": True, "rs_level": "geometric", "rs_lower_bound": 0.95, "rs_upper_bound": 1.05},
    {"use_rs": True, "rs_veto_threshold": 0.4, "tis_mode": "clip", "tis_batch_normalize": True},
    {"tis_level": "sequence", "tis_batch_normalize": True, "use_rs": True, "rs_level": "sequence"},
    {"tis_level": "geometric", "tis_batch_normalize": True},
]


@pytest.mark.parametrize("overrides", MIS_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mis_matches_reference(overrides, seed):
    args = mis_args(**overrides)
    samples = samples_with_gap(seed, scale=0.4, num_samples=8)
    batch = to_batch(samples)
    pg_loss = torch.ones_like(batch.log_probs)
    weighted, keep, metrics = mis(
        args,
        pg_loss=pg_loss,
        train_log_probs=batch.old_log_probs,
        rollout_log_probs=batch.rollout_log_probs,
        loss_masks=batch.loss_masks,
        response_lengths=batch.response_lengths,
    )
    expected = ref_mis(args, samples)

    def packed(key):
        return torch.tensor([x for o in expected for x in o[key]], dtype=torch.float64)

    torch.testing.assert_close(weighted, packed("weights"), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(keep, packed("keep"), rtol=0, atol=0)
    assert set(metrics) == set(expected[0]["metrics"])
    for name in metrics:
        want = torch.tensor([x for o in expected for x in o["metrics"][name]], dtype=torch.float64)
        torch.testing.assert_close(metrics[name].double(), want, rtol=1e-12, atol=1e-12, msg=name)
    if args.use_rs or args.tis_mode == "mask":
        assert keep.sum() < batch.loss_masks.sum()  # the cases do reject something


@pytest.mark.parametrize("overrides", [{}, {"tis_mode": "mask"}, {"use_rs": True, "rs_veto_threshold": 0.4}])
def test_mis_in_the_policy_loss(overrides):
    """Rejected tokens leave the numerator, not the denominators; metrics are reduced with the original mask."""
    args = mis_args(**overrides)
    samples = samples_with_gap(5, scale=0.4, num_samples=8)
    batch, loss, metrics = run_loss(args, samples)
    expected = ref_mis(args, samples)
    total = dict.fromkeys(expected[0]["metrics"], 0.0)
    pg = 0.0
    grad = []
    for s, o, w in zip(samples, expected, token_weights(samples, False), strict=True):
        for t, m in enumerate(s["mask"]):
            r, a = math.exp(s["logp"][t] - s["old"][t]), s["adv"][t]
            c = clamp(r, 0.8, 1.2)
            clipped = -c * a > -r * a
            pg += w * o["keep"][t] * o["weights"][t] * max(-r * a, -c * a)
            grad.append(w * o["keep"][t] * o["weights"][t] * (0.0 if clipped else -a * r))
            for name in total:
                total[name] += w * m * o["metrics"][name][t]
    assert loss.item() == pytest.approx(pg, rel=1e-9, abs=1e-12)
    for name, value in total.items():
        assert metrics[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name
    (got,) = torch.autograd.grad(loss, [batch.log_probs])
    torch.testing.assert_close(got, torch.tensor(grad, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_mis_policy_loss_gradcheck():
    args = mis_args(tis_mode="clip", use_rs=True, tis_batch_normalize=True)
    samples = samples_with_gap(6, scale=0.3)
    batch = to_batch(samples)
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, False)
    log_probs = batch.log_probs.detach().clone().requires_grad_(True)

    def loss_of(lp):
        batch.log_probs = lp
        return compute_loss(args, batch, reducer)[0]

    assert torch.autograd.gradcheck(loss_of, (log_probs,), eps=1e-7, atol=1e-6)


# ---- icepop ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bounds", [(0.0, 2.0), (0.5, 1.5), (0.9, 1.1)])
def test_icepop_zeroes_tokens_outside_the_bounds(bounds):
    low, high = bounds
    args = make_args(use_tis=True, custom_tis_function_path="icepop", tis_clip_low=low, tis_clip=high)
    samples = samples_with_gap(7, scale=0.4, num_samples=8)
    batch, loss, metrics = run_loss(args, samples)
    names = ("tis", "tis_clipfrac", "tis_abs")
    total, pg, grad, outside = dict.fromkeys(names, 0.0), 0.0, [], 0
    for s, w in zip(samples, token_weights(samples, False), strict=True):
        for t, m in enumerate(s["mask"]):
            ratio = math.exp(s["old"][t] - s["rollout"][t])
            weight = ratio if low <= ratio <= high else 0.0
            outside += m and weight == 0.0
            r, a = math.exp(s["logp"][t] - s["old"][t]), s["adv"][t]
            c = clamp(r, 0.8, 1.2)
            pg += w * m * weight * max(-r * a, -c * a)
            grad.append(w * m * weight * (0.0 if -c * a > -r * a else -a * r))
            total["tis"] += w * m * ratio
            total["tis_clipfrac"] += w * m * (weight != ratio)
            total["tis_abs"] += w * m * abs(ratio - 1)
    assert loss.item() == pytest.approx(pg, rel=1e-9, abs=1e-12)
    for name in names:
        assert metrics[name].item() == pytest.approx(total[name], rel=1e-9, abs=1e-12), name
    (got,) = torch.autograd.grad(loss, [batch.log_probs])
    torch.testing.assert_close(got, torch.tensor(grad, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    if bounds != (0.0, 2.0):
        assert outside > 0


def test_mis_settings_come_from_slimes_yaml_keys(tmp_path):
    """slime's mis.yaml (its keys as they are) works as a --config file here."""
    from slime.config.arguments import parse_args

    config = tmp_path / "mis.yaml"
    config.write_text(
        "use_tis: true\nuse_rs: true\ntis_level: token\nrs_level: token\ntis_mode: truncate\n"
        "tis_lower_bound: 0.5\ntis_upper_bound: 2.0\nrs_lower_bound: null\nrs_upper_bound: null\n"
        "rs_veto_threshold: 1.0e-4\ntis_batch_normalize: true\n"
    )
    args = parse_args(["--config", str(config), "--custom-tis-function-path", "mis"])
    assert (args.use_tis, args.use_rs, args.tis_batch_normalize) == (True, True, True)
    assert (args.tis_lower_bound, args.tis_upper_bound, args.rs_veto_threshold) == (0.5, 2.0, 1e-4)
    assert args.rs_lower_bound is None and args.tis_mode == "truncate"
