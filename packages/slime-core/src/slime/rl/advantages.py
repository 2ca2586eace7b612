"""Advantage estimators (``--advantage-estimator``) and the step that runs the selected one.

Layout: per-sample lists. Every tensor in an ``AdvantageBatch`` is one sample's 1-D, response-only tensor (its
length is that sample's response length), and the estimators return advantages and returns in the same layout.

An estimator is ``f(args, batch: AdvantageBatch) -> (advantages, returns)``, both ``list[Tensor]`` shaped like
``batch.loss_masks``. It is registered by name through ``slime_register_advantage_estimators`` and selected with
``--advantage-estimator NAME`` (or a dotted import path). ``compute_advantages_and_returns`` runs it and then
applies ``--normalize-advantages``.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from slime import plugins
from slime.rl.kl import compute_approx_kl
from slime.rl.opd import apply_opd_kl
from slime.rl.whiten import masked_whiten

# Long responses are scanned in chunks: one small matrix product per chunk instead of a Python step per token.
SCAN_CHUNK = 128


@dataclass
class AdvantageBatch:
    """What estimators read, one entry per sample (all tensors 1-D over the sample's response tokens).

    ``rewards`` are the post-processed scalar rewards (``slime.rl.reward_normalization.postprocess_rewards``).
    ``log_probs`` (the policy's, before this step's updates) and ``ref_log_probs`` are needed for a KL penalty in the
    reward (``--kl-coef`` != 0); ``values`` (critic) for ``ppo``; ``log_probs`` and ``teacher_log_probs`` for
    ``--use-opd``.
    """

    rewards: list[float]
    loss_masks: list[torch.Tensor]
    log_probs: list[torch.Tensor] | None = None
    ref_log_probs: list[torch.Tensor] | None = None
    values: list[torch.Tensor] | None = None
    teacher_log_probs: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if len(self.rewards) != len(self.loss_masks):
            raise ValueError(f"{len(self.rewards)} rewards but {len(self.loss_masks)} loss masks")


AdvantageEstimator = Callable[[argparse.Namespace, AdvantageBatch], tuple[list[torch.Tensor], list[torch.Tensor]]]


def discounted_cumsum(x: torch.Tensor, discount: float) -> torch.Tensor:
    """``out[t] = sum_{s >= t} discount**(s - t) * x[s]`` over a 1-D tensor."""
    if discount == 1.0:
        return x.flip(0).cumsum(0).flip(0)
    offsets = torch.arange(SCAN_CHUNK, device=x.device)
    exponents = offsets[None, :] - offsets[:, None]  # [t, s] -> s - t
    powers = torch.where(exponents >= 0, discount ** exponents.clamp(min=0).to(x.dtype), 0)
    out = torch.empty_like(x)
    carry = x.new_zeros(())  # out[end]: the discounted sum from the start of the chunk after this one
    for end in range(x.numel(), 0, -SCAN_CHUNK):
        start = max(0, end - SCAN_CHUNK)
        size = end - start
        # powers[t, size - 1] * discount == discount**(end - t): how much of out[end] reaches position t.
        chunk = powers[:size, :size] @ x[start:end] + powers[:size, size - 1] * discount * carry
        out[start:end] = chunk
        carry = chunk[0]
    return out


def token_rewards(reward: float, kl: torch.Tensor, kl_coef: float, loss_mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl`` on trainable tokens, plus the scalar reward on the last trainable one."""
    rewards = -kl_coef * kl * loss_mask
    trainable = loss_mask.nonzero()
    if trainable.numel():
        rewards[trainable[-1, 0]] += reward
    return rewards


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lambd: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over one response: ``(advantages, returns = advantages + values)``; the value after the last token is 0."""
    next_values = torch.cat([values[1:], values.new_zeros(1)])
    deltas = rewards + gamma * next_values - values
    advantages = discounted_cumsum(deltas, gamma * lambd)
    return advantages, advantages + values


def reward_kl(args: argparse.Namespace, batch: AdvantageBatch) -> list[torch.Tensor]:
    """Per-token KL(policy || ref) for the reward penalty (``--kl-loss-type``), zeros when ``--kl-coef`` is 0."""
    if args.kl_coef == 0:
        return [torch.zeros(mask.shape, device=mask.device) for mask in batch.loss_masks]
    if batch.log_probs is None or batch.ref_log_probs is None:
        raise ValueError("--kl-coef needs the policy's and the reference model's log-probs")
    return [
        compute_approx_kl(lp.float(), ref.float(), args.kl_loss_type)
        for lp, ref in zip(batch.log_probs, batch.ref_log_probs, strict=True)
    ]


def grpo_advantages(args: argparse.Namespace, batch: AdvantageBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """grpo, gspo, cispo: the (group-normalised) scalar reward on every token; no KL in the reward."""
    advantages = [
        torch.full(mask.shape, reward, device=mask.device)
        for reward, mask in zip(batch.rewards, batch.loss_masks, strict=True)
    ]
    return advantages, advantages


def reinforce_plus_plus_advantages(
    args: argparse.Namespace, batch: AdvantageBatch
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """REINFORCE++: discounted (``--gamma``) returns of KL-penalised token rewards; advantages are the returns."""
    kls = reward_kl(args, batch)
    returns = [
        discounted_cumsum(token_rewards(reward, kl, args.kl_coef, mask.float()), args.gamma)
        for reward, kl, mask in zip(batch.rewards, kls, batch.loss_masks, strict=True)
    ]
    return returns, returns


def reinforce_plus_plus_baseline_advantages(
    args: argparse.Namespace, batch: AdvantageBatch
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """REINFORCE++ with a group-mean baseline (already subtracted from the rewards) minus the per-token KL penalty."""
    kls = reward_kl(args, batch)
    advantages = [reward - args.kl_coef * kl for reward, kl in zip(batch.rewards, kls, strict=True)]
    return advantages, advantages


def uses_critic(args: argparse.Namespace) -> bool:
    """PPO trains a critic (a value model) beside the policy, as slime's ``use_critic``; a debug run without a
    trainer trains neither."""
    return args.advantage_estimator == "ppo" and not args.debug_rollout_only


def ppo_advantages(args: argparse.Namespace, batch: AdvantageBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """PPO: GAE (``--gamma``, ``--lambd``) over KL-penalised token rewards with the critic's values."""
    if batch.values is None:
        raise ValueError("the ppo advantage estimator needs the critic's values")
    kls = reward_kl(args, batch)
    advantages, returns = [], []
    for reward, kl, values in zip(batch.rewards, kls, batch.values, strict=True):
        # slime's ppo (unlike REINFORCE++) penalises every response token and puts the reward on the last one,
        # trainable or not: the critic's values span the whole response, so GAE runs over all of it.
        rewards = -args.kl_coef * kl
        if rewards.numel():
            rewards[-1] += reward
        adv, ret = generalized_advantages(rewards, values.float(), args.gamma, args.lambd)
        advantages.append(adv)
        returns.append(ret)
    return advantages, returns


@torch.no_grad()
def compute_advantages_and_returns(
    args: argparse.Namespace, batch: AdvantageBatch, group: dist.ProcessGroup | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run ``--advantage-estimator``, subtract the distillation term (``--use-opd``), then whiten the advantages over
    ``group`` if ``--normalize-advantages`` (slime's order).

    ``group`` is the data-parallel group whose ranks together hold the step's samples (``None``: this process only).
    """
    estimator: AdvantageEstimator = plugins.resolve("advantage_estimators", args.advantage_estimator)
    advantages, returns = estimator(args, batch)
    if args.use_opd:
        if batch.log_probs is None or batch.teacher_log_probs is None:
            raise ValueError("--use-opd needs the student's and the teacher's log-probs of the samples")
        advantages = apply_opd_kl(advantages, batch.log_probs, batch.teacher_log_probs, args.opd_kl_coef)
    if args.normalize_advantages:
        advantages = masked_whiten(advantages, batch.loss_masks, group)
    return advantages, returns
