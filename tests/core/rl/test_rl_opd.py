"""On-policy distillation's reverse-KL term (slime's apply_opd_kl_to_advantages) against float64 loops."""

import random

import pytest
import torch
from test_rl_advantages import make_args, random_data, ref_estimator, ref_whiten, to_batch

from slime.rl.advantages import compute_advantages_and_returns
from slime.rl.losses import LossBatch, compute_loss
from slime.rl.reduction import make_reducer


def with_teacher(data, seed):
    rng = random.Random(seed)
    data["teacher_log_probs"] = [[x + rng.gauss(0, 0.5) for x in row] for row in data["log_probs"]]
    return data


def opd_batch(data):
    batch = to_batch(data)
    batch.teacher_log_probs = [torch.tensor(row, dtype=torch.float64) for row in data["teacher_log_probs"]]
    return batch


@pytest.mark.parametrize(
    "overrides",
    [
        {"advantage_estimator": "grpo"},
        {"advantage_estimator": "grpo", "opd_kl_coef": 0.3, "normalize_advantages": True},
        {"advantage_estimator": "ppo", "gamma": 0.99, "lambd": 0.95, "kl_coef": 0.1},
        {"advantage_estimator": "reinforce_plus_plus_baseline", "normalize_advantages": True, "opd_kl_coef": 2.0},
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_opd_term_matches_reference(overrides, seed):
    args = make_args(use_opd=True, **overrides)
    data = with_teacher(random_data(seed), seed)
    advantages, returns = compute_advantages_and_returns(args, opd_batch(data))

    plain = make_args(**{**overrides, "normalize_advantages": False})
    expected, expected_returns = ref_estimator(plain, data)
    # After the estimator, before whitening; the returns (the critic's targets) are untouched.
    expected = [
        [a - args.opd_kl_coef * (s - t) for a, s, t in zip(adv, student, teacher, strict=True)]
        for adv, student, teacher in zip(expected, data["log_probs"], data["teacher_log_probs"], strict=True)
    ]
    if args.normalize_advantages:
        expected = ref_whiten(expected, data["loss_masks"])
    for got, want in zip(advantages, expected, strict=True):
        torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), rtol=2e-5, atol=2e-5)
    for got, want in zip(returns, expected_returns, strict=True):
        torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), rtol=2e-5, atol=2e-5)


def test_pure_distillation_gradient_is_the_reverse_kl_gradient():
    """Zero reward: the on-policy policy-gradient step follows coef * (log pi_s - log pi_t) per sampled token."""
    data = with_teacher(random_data(3, num_samples=6), 3)
    data["rewards"] = [0.0] * len(data["rewards"])
    args = make_args(use_opd=True, opd_kl_coef=0.7, loss_type="policy_loss")
    advantages, _ = compute_advantages_and_returns(args, opd_batch(data))

    lengths = [len(m) for m in data["loss_masks"]]
    masks = torch.tensor([m for row in data["loss_masks"] for m in row])
    log_probs = torch.tensor([x for row in data["log_probs"] for x in row], dtype=torch.float64, requires_grad=True)
    for name, value in {"eps_clip": 0.2, "eps_clip_high": None, "eps_clip_c": None, "entropy_coef": 0.0}.items():
        setattr(args, name, value)
    args.use_kl_loss = args.use_tis = args.get_mismatch_metrics = args.use_opsm = False
    batch = LossBatch(lengths, masks, log_probs=log_probs, advantages=torch.cat(advantages).double())
    loss, _ = compute_loss(args, batch, make_reducer(lengths, masks, False))
    (grad,) = torch.autograd.grad(loss, [log_probs])

    expected = []
    for student, teacher, mask in zip(data["log_probs"], data["teacher_log_probs"], data["loss_masks"], strict=True):
        weight = 1 / (max(sum(mask), 1) * len(lengths))
        expected.extend(weight * m * 0.7 * (s - t) for s, t, m in zip(student, teacher, mask, strict=True))
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_opd_needs_teacher_log_probs():
    data = random_data(4)
    with pytest.raises(ValueError, match="--use-opd needs the student's and the teacher's log-probs"):
        compute_advantages_and_returns(make_args(use_opd=True), to_batch(data))
