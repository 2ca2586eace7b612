"""Per-token KL estimators between the policy and the reference model.

All tensors here are per-token and elementwise, so they work on one sample's 1-D tensors and on a packed batch alike.
"""

import torch

KL_TYPES = ("k1", "k2", "k3", "low_var_kl")


def compute_approx_kl(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    kl_type: str,
    importance_ratio: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from sampled tokens' log-probs (``--kl-loss-type``).

    ``k1`` is the log ratio, ``k2`` half its square, ``k3``/``low_var_kl`` ``exp(-d) - 1 + d`` with
    ``d = log_probs - ref_log_probs`` (non-negative, lower variance). ``importance_ratio`` (``--use-unbiased-kl``:
    ``exp(log_probs - old_log_probs)``) reweights the estimate to the current policy's samples. ``low_var_kl`` is
    clamped to [-10, 10] after that weighting, as slime does, to keep one stray token from dominating the loss.
    """
    log_ratio = log_probs - ref_log_probs
    if kl_type == "k1":
        kl = log_ratio
    elif kl_type == "k2":
        kl = log_ratio.square() / 2
    elif kl_type in ("k3", "low_var_kl"):
        kl = torch.expm1(-log_ratio) + log_ratio
    else:
        raise ValueError(f"unknown KL type {kl_type!r}; expected one of {', '.join(KL_TYPES)}")
    if importance_ratio is not None:
        kl = importance_ratio * kl
    if kl_type == "low_var_kl":
        kl = kl.clamp(-10, 10)
    return kl
