"""Training losses (``--loss-type``): the policy loss, the SFT loss and the critic's value loss.

Layout: packed. Every tensor in a ``LossBatch`` is the concatenation of the samples' response-only 1-D tensors, with
``response_lengths`` giving each sample's length (see ``slime.rl.reduction``); per-sample lists are packed with
``torch.cat``. A sample must be whole within one batch (GSPO takes a mean over each sample).

A loss function is ``f(args, batch: LossBatch, reducer: Reducer) -> (loss, metrics)``: ``loss`` a scalar to
backpropagate, ``metrics`` detached scalars that slime logs as ``train/<name>``. It is registered by name through
``slime_register_policy_losses`` and selected with ``--loss-type NAME`` (or a dotted import path), or, as in slime,
with ``--loss-type custom_loss --custom-loss-function-path PATH``. ``--custom-pg-loss-reducer-function-path``
replaces the reduction of the policy-gradient term alone (slime's hook, e.g. Dr.GRPO's constant denominator).

slime's own form ``f(args, batch, logits, sum_of_sample_mean)`` reads the model's logits, which only a backend has:
``resolve_loss`` tells the two forms apart by signature, and the megatron backend runs slime's
(``slime_megatron.slime_loss``).
"""

import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from slime import plugins
from slime.errors import ConfigError
from slime.rl.kl import compute_approx_kl
from slime.rl.mismatch import mismatch_metrics
from slime.rl.opsm import opsm_keep_mask
from slime.rl.reduction import Reducer, per_sample_mean
from slime.rl.tis import DEFAULT_IMPORTANCE_WEIGHTS


@dataclass
class LossBatch:
    """A packed micro-batch. Which fields a loss needs depends on it and on the flags; each says what it is for.

    ``log_probs``: the current policy's (with grad), from logits at the rollout temperature. ``entropy``: the current
    policy's (with grad; needed for ``--entropy-coef``, logged when present). ``old_log_probs``: the policy that
    generated the data, as recomputed by the trainer; ``None`` means training is exactly on-policy (one optimizer
    step per rollout) and they equal the detached current ones. ``ref_log_probs``: reference model (KL loss).
    ``rollout_log_probs``: the rollout engine's (TIS). ``values``/``old_values``/``returns``: the critic's (value loss).
    """

    response_lengths: list[int]
    loss_masks: torch.Tensor
    total_lengths: list[int] | None = None  # prompt + response, per sample (slime's pg-loss reducers take them)
    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    old_log_probs: torch.Tensor | None = None
    ref_log_probs: torch.Tensor | None = None
    rollout_log_probs: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    values: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None


LossFunction = Callable[[argparse.Namespace, LossBatch, Reducer], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def ppo_clip_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    eps_clip: float,
    eps_clip_high: float,
    eps_clip_c: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped surrogate ``max(-r A, -clip(r, 1 - eps, 1 + eps_high) A)`` and where clipping won.

    ``log_ratio`` is ``log_probs - old_log_probs``. Dual clip (``eps_clip_c`` > 1) also bounds the loss of
    negative-advantage tokens by ``-eps_clip_c * A``, so a huge ratio cannot blow up the update.
    """
    ratio = log_ratio.exp()
    unclipped = -ratio * advantages
    clipped = -ratio.clamp(1 - eps_clip, 1 + eps_clip_high) * advantages
    losses = torch.maximum(unclipped, clipped)
    clipfrac = (clipped > unclipped).to(losses.dtype)
    if eps_clip_c is not None:
        if eps_clip_c <= 1:
            raise ValueError(f"--eps-clip-c must be greater than 1, got {eps_clip_c}")
        dual = torch.minimum(losses, -eps_clip_c * advantages)
        losses = torch.where(advantages < 0, dual, losses)
    return losses, clipfrac


def cispo_loss(
    log_ratio: torch.Tensor,
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    eps_clip: float,
    eps_clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token CISPO loss ``-sg(clip(r, 1 - eps, 1 + eps_high)) * A * log_probs`` and where the ratio was clipped.

    Clipping the (detached) weight instead of the surrogate keeps every token's gradient, clipped ones included.
    """
    ratio = log_ratio.detach().exp()
    weight = ratio.clamp(1 - eps_clip, 1 + eps_clip_high)
    return -weight * advantages * log_probs, (weight != ratio).to(log_probs.dtype)


def sequence_log_ratio(log_ratio: torch.Tensor, loss_masks: torch.Tensor, response_lengths: list[int]) -> torch.Tensor:
    """GSPO: each sample's masked mean log ratio, broadcast to its tokens (an all-masked sample gets 0)."""
    return per_sample_mean(log_ratio, loss_masks, response_lengths)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, value_clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO value loss ``max((v - R)^2, (clip(v, old ± value_clip) - R)^2)`` and where ``v`` left the band.

    As slime's ``value_loss_function``: no 1/2 factor, and the clip fraction counts tokens whose value moved more than
    ``value_clip`` from the old one (whether or not the clipped error was the larger).
    """
    clipped_values = old_values + (values - old_values).clamp(-value_clip, value_clip)
    losses = torch.maximum((values - returns).square(), (clipped_values - returns).square())
    return losses, ((values - old_values).abs() > value_clip).to(values.dtype)


def _require(batch: LossBatch, *names: str) -> None:
    missing = [name for name in names if getattr(batch, name) is None]
    if missing:
        raise ValueError(f"this loss needs {', '.join(missing)} in the batch")


def policy_loss(
    args: argparse.Namespace, batch: LossBatch, reducer: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``pg_loss - entropy_coef * entropy + kl_loss_coef * kl_loss``, with OPSM and TIS when asked for.

    The surrogate follows ``--advantage-estimator``: ``gspo`` clips a per-sequence ratio, ``cispo`` uses the CISPO
    loss, every other estimator the PPO clip. ``--use-opsm`` then drops off-policy negative sequences, and
    ``--use-tis`` reweights by the importance-weight function (slime's order). Metrics: ``loss``, ``pg_loss``,
    ``pg_clipfrac``, ``ppo_kl`` (mean of ``old_log_probs - log_probs``: exactly 0 on-policy), ``entropy_loss`` when
    entropy is given, ``kl_loss`` with ``--use-kl-loss``, ``train_rollout_logprob_abs_diff`` when the engine's
    log-probs are given, ``opsm_clipfrac`` with OPSM, ``ois`` with TIS or ``--get-mismatch-metrics``, the mismatch
    metrics (``mis_*``, ``slime.rl.mismatch``) with the latter, and the importance-weight function's with TIS.
    """
    _require(batch, "log_probs", "advantages")
    log_probs = batch.log_probs
    old_log_probs = log_probs.detach() if batch.old_log_probs is None else batch.old_log_probs
    log_ratio = log_probs - old_log_probs
    eps_clip_high = args.eps_clip if args.eps_clip_high is None else args.eps_clip_high

    if args.advantage_estimator == "gspo":
        log_ratio = sequence_log_ratio(log_ratio, batch.loss_masks, batch.response_lengths)
    if args.advantage_estimator == "cispo":
        pg_losses, clipfrac = cispo_loss(log_ratio, log_probs, batch.advantages, args.eps_clip, eps_clip_high)
    else:
        pg_losses, clipfrac = ppo_clip_loss(log_ratio, batch.advantages, args.eps_clip, eps_clip_high, args.eps_clip_c)

    opsm_metrics: dict[str, torch.Tensor] = {}
    if args.use_opsm:
        keep = opsm_keep_mask(
            log_probs, old_log_probs, batch.advantages, batch.loss_masks, batch.response_lengths, args.opsm_delta
        )
        pg_losses = pg_losses * keep
        opsm_metrics["opsm_clipfrac"] = 1 - keep

    pg_mask = batch.loss_masks
    tis_metrics: dict[str, torch.Tensor] = {}
    if args.use_tis or args.get_mismatch_metrics:
        _require(batch, "rollout_log_probs")
        # slime's ois: the PPO ratio pi / pi_old (on-policy: 1), logged beside the train-vs-engine metrics.
        tis_metrics["ois"] = log_ratio.detach().exp()
    if args.get_mismatch_metrics:
        # The trainer's log-probs of the rollout's policy; with --use-rollout-logprobs the old ones are the
        # engine's, so the current policy's (equal to the trainer's on a rollout's first step) stand in.
        train_log_probs = log_probs.detach() if args.use_rollout_logprobs else old_log_probs
        tis_metrics.update(
            mismatch_metrics(train_log_probs, batch.rollout_log_probs, batch.loss_masks, batch.response_lengths)
        )
    if args.use_tis:
        name = args.custom_tis_function_path or DEFAULT_IMPORTANCE_WEIGHTS
        importance_weights = plugins.resolve("importance_weights", name)
        pg_losses, pg_mask, weight_metrics = importance_weights(
            args,
            pg_loss=pg_losses,
            train_log_probs=old_log_probs,
            rollout_log_probs=batch.rollout_log_probs,
            loss_masks=batch.loss_masks,
            response_lengths=batch.response_lengths,
        )
        tis_metrics.update(weight_metrics)

    if getattr(args, "custom_pg_loss_reducer_function_path", None):  # slime reads it so too
        pg_loss = custom_pg_loss(args, batch, pg_losses, pg_mask, reducer)
    else:
        pg_loss = reducer(pg_losses, pg_mask)
    loss = pg_loss
    metrics = {"pg_loss": pg_loss, "pg_clipfrac": reducer(clipfrac), "ppo_kl": reducer(-log_ratio)}
    # Reduced with the loss mask as it was before any rejection, so a rejected token still counts in a fraction.
    metrics.update({name: reducer(value) for name, value in {**opsm_metrics, **tis_metrics}.items()})
    if batch.rollout_log_probs is not None:
        # The engine's sampling policy vs the trainer's: large values mean their weights or numerics differ.
        metrics["train_rollout_logprob_abs_diff"] = reducer((old_log_probs - batch.rollout_log_probs).abs())

    if args.entropy_coef != 0:
        _require(batch, "entropy")
    if batch.entropy is not None:
        entropy_loss = reducer(batch.entropy)
        loss = loss - args.entropy_coef * entropy_loss
        metrics["entropy_loss"] = entropy_loss

    if args.use_kl_loss:
        _require(batch, "ref_log_probs")
        # --use-unbiased-kl: weight by pi/pi_old, keeping its gradient, for an unbiased KL gradient off-policy.
        importance_ratio = (log_probs - old_log_probs).exp() if args.use_unbiased_kl else None
        kl = compute_approx_kl(log_probs, batch.ref_log_probs, args.kl_loss_type, importance_ratio)
        kl_loss = reducer(kl)
        loss = loss + args.kl_loss_coef * kl_loss
        metrics["kl_loss"] = kl_loss

    metrics["loss"] = loss
    return loss, {name: value.detach() for name, value in metrics.items()}


def custom_pg_loss(
    args: argparse.Namespace, batch: LossBatch, pg_losses: torch.Tensor, pg_mask: torch.Tensor, reducer: Reducer
) -> torch.Tensor:
    """``--custom-pg-loss-reducer-function-path``: slime's ``f(total_lengths, response_lengths, loss_masks,
    calculate_per_token_loss)`` returns a function of the packed per-token pg loss that sums over the micro-batch's
    samples (per-token mode: over its tokens); slime divides that by the step's samples (tokens), as here."""
    make_reducer = plugins.load_object(
        args.custom_pg_loss_reducer_function_path, "--custom-pg-loss-reducer-function-path"
    )
    _require(batch, "total_lengths")
    masks = list(pg_mask.split(batch.response_lengths))
    reduce = make_reducer(batch.total_lengths, batch.response_lengths, masks, args.calculate_per_token_loss)
    return reduce(pg_losses) / reducer.step_size


def sft_loss(
    args: argparse.Namespace, batch: LossBatch, reducer: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of the unmasked response tokens."""
    _require(batch, "log_probs")
    loss = reducer(-batch.log_probs)
    return loss, {"loss": loss.detach()}


def value_loss(
    args: argparse.Namespace, batch: LossBatch, reducer: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's clipped value loss (``--value-clip``); ``old_values=None`` means the critic has not moved yet."""
    _require(batch, "values", "returns")
    old_values = batch.values.detach() if batch.old_values is None else batch.old_values
    losses, clipfrac = clipped_value_loss(batch.values, old_values, batch.returns, args.value_clip)
    loss = reducer(losses)
    return loss, {"value_loss": loss.detach(), "value_clipfrac": reducer(clipfrac).detach()}


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def is_slime_loss(function: Callable, where: str) -> bool:
    """Whether ``function`` is slime's ``f(args, batch, logits, sum_of_sample_mean)`` rather than ours
    ``f(args, batch, reducer)``.

    A parameter named ``logits`` or ``sum_of_sample_mean`` says slime's; otherwise the arguments it takes do (four:
    slime's, three: ours). Anything else is a one-line ``ConfigError`` that starts with ``where`` (the flag and path).
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to read (a builtin): called as ours
        return False
    slime_names = any(name in signature.parameters for name in ("logits", "sum_of_sample_mean"))
    if _binds(signature, 4) and (slime_names or not _binds(signature, 3)):
        return True
    if _binds(signature, 3) and not slime_names:
        return False
    name = getattr(function, "__name__", type(function).__name__)
    raise ConfigError(
        f"{where}: {name}{signature} is neither slime's loss f(args, batch, logits, sum_of_sample_mean) "
        f"nor ours f(args, batch, reducer)"
    )


def _loss_flag(args: argparse.Namespace) -> tuple[str, str]:
    """The flag that names the loss, and its value."""
    if args.loss_type == "custom_loss":
        return "--custom-loss-function-path", args.custom_loss_function_path
    return "--loss-type", args.loss_type


def resolve_loss(args: argparse.Namespace) -> tuple[Callable, bool]:
    """The loss ``--loss-type`` names (``custom_loss``: the one ``--custom-loss-function-path`` names) and whether
    it is in slime's form (``is_slime_loss``)."""
    flag, path = _loss_flag(args)
    if flag == "--loss-type":
        function = plugins.resolve("policy_losses", path)
    else:
        function = plugins.load_object(path, flag)
    return function, is_slime_loss(function, f"{flag} {path!r}")


def compute_loss(
    args: argparse.Namespace, batch: LossBatch, reducer: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the loss ``--loss-type`` names, in our form (a backend runs slime's form itself, from the logits)."""
    loss_function, slime_form = resolve_loss(args)
    if slime_form:
        flag, path = _loss_flag(args)
        raise ConfigError(
            f"{flag} {path!r}: a loss in slime's form f(args, batch, logits, sum_of_sample_mean) needs the model's "
            f"logits, which only the megatron backend gives a loss; elsewhere write it as f(args, batch, reducer)"
        )
    return loss_function(args, batch, reducer)
