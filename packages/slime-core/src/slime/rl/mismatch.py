"""Train-inference mismatch metrics (``--get-mismatch-metrics``): how far the rollout engine's log-probs are from
the trainer's for the same tokens.

Names and formulas are those of slime's ``add_ppl_metrics`` (``examples/train_infer_mismatch_helper/mis.py``),
logged with its ``mis_`` prefix. Every value is a per-token tensor (packed, see ``slime.rl.reduction``); sequence
statistics are repeated on the sequence's tokens, so the loss's reducer averages them like any token metric (per
sample, or per token with ``--calculate-per-token-loss``). All are 0 (ratios 1) when the two agree.
"""

from collections.abc import Sequence

import torch

from slime.rl.reduction import per_sample_mean, per_sample_sum

# exp() of a log ratio beyond this overflows float32 when squared; slime clamps there too.
SAFETY_BOUND = 20.0


def mismatch_metrics(
    train_log_probs: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    loss_masks: torch.Tensor,
    response_lengths: Sequence[int],
) -> dict[str, torch.Tensor]:
    """Perplexities, KL estimators and importance-ratio moments between the trainer and the engine (detached)."""
    train = train_log_probs.detach()
    rollout = rollout_log_probs.detach()
    mean_train = per_sample_mean(train, loss_masks, response_lengths)
    mean_rollout = per_sample_mean(rollout, loss_masks, response_lengths)
    log_ratio = train - rollout  # log(pi_train / pi_rollout) per token
    log_ppl_diff = mean_rollout - mean_train  # log(training ppl / rollout ppl)
    rho = log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND).exp()
    seq_log_ratio = per_sample_sum(log_ratio, loss_masks, response_lengths).clamp(-SAFETY_BOUND, SAFETY_BOUND)
    return {
        "mis_training_log_ppl": -mean_train,
        "mis_training_ppl": (-mean_train).exp(),
        "mis_rollout_log_ppl": -mean_rollout,
        "mis_rollout_ppl": (-mean_rollout).exp(),
        # KL(pi_rollout || pi_train) from the engine's own samples: k1 and Schulman's k3 (r - 1 - log r).
        "mis_kl": rollout - train,
        "mis_k3_kl": log_ratio.exp() - log_ratio - 1,
        "mis_log_ppl_diff": log_ppl_diff,
        "mis_log_ppl_abs_diff": log_ppl_diff.abs(),
        "mis_ppl_ratio": log_ppl_diff.exp(),
        # Chi-squared divergence = second moment of the importance weight minus 1, per token and per sequence.
        "mis_chi2_token": per_sample_mean(rho.square(), loss_masks, response_lengths) - 1,
        "mis_chi2_seq": (2 * seq_log_ratio).exp() - 1,
    }
