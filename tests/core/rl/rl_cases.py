"""Shared cases of the loss tests: slime's loss flags, ragged random samples in float64, the loss run on them, and the
reducer's per-sample factors written out as a loop."""

import argparse
import random

import torch

from slime.rl.losses import LossBatch, compute_loss
from slime.rl.reduction import make_reducer


def make_args(**overrides):
    args = argparse.Namespace(
        advantage_estimator="grpo",
        loss_type="policy_loss",
        eps_clip=0.2,
        eps_clip_high=None,
        eps_clip_c=None,
        value_clip=0.2,
        entropy_coef=0.0,
        use_kl_loss=False,
        kl_loss_coef=0.0,
        kl_loss_type="k1",
        use_unbiased_kl=False,
        use_tis=False,
        get_mismatch_metrics=False,
        use_rollout_logprobs=False,
        use_opsm=False,
        opsm_delta=1e-4,
        tis_clip=2.0,
        tis_clip_low=0.0,
        custom_tis_function_path=None,
        calculate_per_token_loss=False,
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def random_samples(seed, num_samples=7, max_len=25):
    """Ragged samples as Python lists; one is fully masked. Old/rollout log-probs drift enough to clip."""
    rng = random.Random(seed)
    samples = []
    for _ in range(num_samples):
        n = rng.randint(1, max_len)
        logp = [rng.uniform(-2.5, -0.05) for _ in range(n)]
        old = [x + rng.gauss(0, 0.3) for x in logp]
        values = [rng.uniform(-1, 1) for _ in range(n)]
        samples.append(
            {
                "mask": [int(rng.random() < 0.8) for _ in range(n)],
                "logp": logp,
                "old": old,
                "ref": [x + rng.gauss(0, 0.5) for x in logp],
                "rollout": [x + rng.gauss(0, 0.4) for x in old],
                "adv": [rng.gauss(0, 1) for _ in range(n)],
                "entropy": [rng.uniform(0, 2) for _ in range(n)],
                "values": values,
                "old_values": [v + rng.gauss(0, 0.2) for v in values],
                "returns": [rng.uniform(-1, 1) for _ in range(n)],
            }
        )
    samples[1]["mask"] = [0] * len(samples[1]["mask"])
    samples[2]["mask"] = [0] * (len(samples[2]["mask"]) - 1) + [1]
    return samples


def packed(samples, key, requires_grad=False):
    return torch.tensor([x for s in samples for x in s[key]], dtype=torch.float64, requires_grad=requires_grad)


def to_batch(samples, on_policy=False):
    # Inputs other than the current policy's require grad too, so a missing detach would show up as a gradient.
    return LossBatch(
        response_lengths=[len(s["mask"]) for s in samples],
        loss_masks=torch.tensor([m for s in samples for m in s["mask"]]),
        log_probs=packed(samples, "logp", requires_grad=True),
        entropy=packed(samples, "entropy", requires_grad=True),
        old_log_probs=None if on_policy else packed(samples, "old"),
        ref_log_probs=packed(samples, "ref"),
        rollout_log_probs=packed(samples, "rollout", requires_grad=True),
        advantages=packed(samples, "adv"),
        values=packed(samples, "values", requires_grad=True),
        old_values=packed(samples, "old_values"),
        returns=packed(samples, "returns"),
    )


def run_loss(args, samples, on_policy=False):
    batch = to_batch(samples, on_policy)
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, args.calculate_per_token_loss)
    loss, metrics = compute_loss(args, batch, reducer)
    return batch, loss, metrics


def token_weights(samples, per_token):
    """For each sample, the factor its masked token sums are multiplied by."""
    if per_token:
        total = sum(sum(s["mask"]) for s in samples)
        return [1 / max(total, 1)] * len(samples)
    return [1 / (max(sum(s["mask"]), 1) * len(samples)) for s in samples]


def clamp(x, low, high):
    return min(max(x, low), high)
