import argparse
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from slime.rl.advantages import AdvantageBatch, compute_advantages_and_returns, discounted_cumsum
from slime.rl.reward_normalization import postprocess_rewards

# Longer than two scan chunks, so chunk boundaries and the carry between them are exercised.
MAX_LEN = 300


def make_args(**overrides):
    args = argparse.Namespace(
        advantage_estimator="grpo",
        n_samples_per_prompt=4,
        disable_grpo_std_normalization=False,
        disable_rewards_normalization=False,
        kl_coef=0.0,
        kl_loss_type="k1",
        gamma=1.0,
        lambd=1.0,
        normalize_advantages=False,
        use_opd=False,
        opd_kl_coef=1.0,
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def random_data(seed, num_samples=8):
    """Ragged per-sample Python lists; one sample fully masked, one ending in masked (tool) tokens."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, MAX_LEN) for _ in range(num_samples)]
    masks = [[int(rng.random() < 0.8) for _ in range(n)] for n in lengths]
    masks[1] = [0] * lengths[1]
    masks[2][-min(3, lengths[2] - 1) :] = [0] * min(3, lengths[2] - 1)
    return {
        "rewards": [rng.uniform(-1, 1) for _ in lengths],
        "loss_masks": masks,
        "log_probs": [[rng.uniform(-3, 0) for _ in range(n)] for n in lengths],
        "ref_log_probs": [[rng.uniform(-3, 0) for _ in range(n)] for n in lengths],
        "values": [[rng.uniform(-1, 1) for _ in range(n)] for n in lengths],
    }


def to_batch(data):
    def tensors(rows):
        return [torch.tensor(row, dtype=torch.float64) for row in rows]

    return AdvantageBatch(
        rewards=list(data["rewards"]),
        loss_masks=[torch.tensor(m) for m in data["loss_masks"]],
        log_probs=tensors(data["log_probs"]),
        ref_log_probs=tensors(data["ref_log_probs"]),
        values=tensors(data["values"]),
    )


# ---- float64 loop references -------------------------------------------------------------------------------------


def ref_kl(logp, ref, kl_type):
    out = []
    for a, b in zip(logp, ref, strict=True):
        d = a - b
        out.append(d if kl_type == "k1" else 0.5 * d * d if kl_type == "k2" else math.exp(-d) - 1 + d)
    return out


def ref_token_rewards(reward, kl, kl_coef, mask):
    rewards = [-kl_coef * k * m for k, m in zip(kl, mask, strict=True)]
    trainable = [i for i, m in enumerate(mask) if m]
    if trainable:
        rewards[trainable[-1]] += reward
    return rewards


def ref_discounted(xs, gamma):
    out, running = [0.0] * len(xs), 0.0
    for t in reversed(range(len(xs))):
        running = xs[t] + gamma * running
        out[t] = running
    return out


def ref_gae(rewards, values, gamma, lambd):
    n = len(rewards)
    advantages, running = [0.0] * n, 0.0
    for t in reversed(range(n)):
        next_value = values[t + 1] if t + 1 < n else 0.0
        running = rewards[t] + gamma * next_value - values[t] + gamma * lambd * running
        advantages[t] = running
    return advantages, [a + v for a, v in zip(advantages, values, strict=True)]


def ref_whiten(rows, masks):
    kept = [x for row, mask in zip(rows, masks, strict=True) for x, m in zip(row, mask, strict=True) if m]
    mean = sum(kept) / len(kept)
    var = sum((x - mean) ** 2 for x in kept) / len(kept)
    return [[(x - mean) / math.sqrt(var + 1e-8) for x in row] for row in rows]


def ref_estimator(args, data):
    rows = zip(
        data["rewards"], data["loss_masks"], data["log_probs"], data["ref_log_probs"], data["values"], strict=True
    )
    advantages, returns = [], []
    for reward, mask, logp, ref, values in rows:
        kl = ref_kl(logp, ref, args.kl_loss_type) if args.kl_coef else [0.0] * len(mask)
        if args.advantage_estimator in ("grpo", "gspo", "cispo"):
            adv = ret = [reward] * len(mask)
        elif args.advantage_estimator == "reinforce_plus_plus":
            adv = ret = ref_discounted(ref_token_rewards(reward, kl, args.kl_coef, mask), args.gamma)
        elif args.advantage_estimator == "reinforce_plus_plus_baseline":
            adv = ret = [reward - args.kl_coef * k for k in kl]
        else:
            # slime's ppo: the KL penalty on every token (masked or not), the reward on the response's last token.
            token_rewards = [-args.kl_coef * k for k in kl]
            token_rewards[-1] += reward
            adv, ret = ref_gae(token_rewards, values, args.gamma, args.lambd)
        advantages.append(adv)
        returns.append(ret)
    if args.normalize_advantages:
        advantages = ref_whiten(advantages, data["loss_masks"])
    return advantages, returns


def assert_rows_close(got, expected, tol=2e-5):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g.double(), torch.tensor(e, dtype=torch.float64), rtol=tol, atol=tol)


# ---- tests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"advantage_estimator": "grpo"},
        {"advantage_estimator": "gspo"},
        {"advantage_estimator": "cispo", "normalize_advantages": True},
        {"advantage_estimator": "reinforce_plus_plus", "normalize_advantages": True},
        {"advantage_estimator": "reinforce_plus_plus", "kl_coef": 0.1, "kl_loss_type": "k3", "gamma": 0.97},
        {"advantage_estimator": "reinforce_plus_plus_baseline", "kl_coef": 0.05, "kl_loss_type": "k2"},
        {"advantage_estimator": "reinforce_plus_plus_baseline", "normalize_advantages": True},
        {"advantage_estimator": "ppo"},
        {"advantage_estimator": "ppo", "kl_coef": 0.2, "gamma": 0.99, "lambd": 0.95},
        {"advantage_estimator": "ppo", "kl_coef": 0.01, "gamma": 1.0, "lambd": 0.9, "normalize_advantages": True},
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_estimators_match_reference(overrides, seed):
    args = make_args(**overrides)
    data = random_data(seed)
    advantages, returns = compute_advantages_and_returns(args, to_batch(data))
    expected_advantages, expected_returns = ref_estimator(args, data)
    assert_rows_close(advantages, expected_advantages)
    assert_rows_close(returns, expected_returns)


def test_reward_kl_needs_log_probs():
    data = random_data(0)
    batch = to_batch(data)
    batch.ref_log_probs = None
    with pytest.raises(ValueError, match="kl-coef"):
        compute_advantages_and_returns(make_args(advantage_estimator="ppo", kl_coef=0.1), batch)


def test_ppo_needs_values():
    batch = to_batch(random_data(0))
    batch.values = None
    with pytest.raises(ValueError, match="critic"):
        compute_advantages_and_returns(make_args(advantage_estimator="ppo"), batch)


@given(
    st.lists(st.floats(-10, 10), min_size=0, max_size=400),
    st.sampled_from([1.0, 0.99, 0.9, 0.5, 0.0]),
)
def test_discounted_cumsum_matches_loop(xs, gamma):
    got = discounted_cumsum(torch.tensor(xs, dtype=torch.float64), gamma)
    torch.testing.assert_close(got, torch.tensor(ref_discounted(xs, gamma), dtype=torch.float64), rtol=1e-9, atol=1e-9)


@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_grpo_advantages_have_zero_group_mean(n, groups, seed):
    rng = random.Random(seed)
    args = make_args(n_samples_per_prompt=n)
    rewards = postprocess_rewards(args, [float(rng.randint(0, 1)) for _ in range(n * groups)])
    masks = [torch.ones(rng.randint(1, 5), dtype=torch.long) for _ in rewards]
    advantages, _ = compute_advantages_and_returns(args, AdvantageBatch(rewards=rewards, loss_masks=masks))
    per_sample = [a[0].item() for a in advantages]
    for start in range(0, len(per_sample), n):
        assert abs(sum(per_sample[start : start + n])) < 1e-5
    assert all(torch.all(a == a[0]) for a in advantages)  # one value broadcast over each response


@given(st.integers(0, 2**32 - 1))
def test_normalized_advantages_are_white_over_unmasked_tokens(seed):
    data = random_data(seed, num_samples=4)
    args = make_args(advantage_estimator="reinforce_plus_plus", normalize_advantages=True, gamma=0.9)
    advantages, _ = compute_advantages_and_returns(args, to_batch(data))
    raw, _ = compute_advantages_and_returns(
        make_args(advantage_estimator="reinforce_plus_plus", normalize_advantages=False, gamma=0.9), to_batch(data)
    )

    def kept(values):
        return torch.cat([a[torch.tensor(m).bool()].double() for a, m in zip(values, data["loss_masks"], strict=True)])

    assert abs(kept(advantages).mean().item()) < 1e-5
    # Whitening divides by sqrt(var + 1e-8): the variance becomes var / (var + 1e-8), 1 unless var is tiny.
    raw_var = kept(raw).var(unbiased=False).item()
    assert kept(advantages).var(unbiased=False).item() == pytest.approx(raw_var / (raw_var + 1e-8), rel=1e-4)
