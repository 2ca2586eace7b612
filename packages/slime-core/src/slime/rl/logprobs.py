"""Token log-probs and entropy from full-vocabulary logits, at the rollout temperature.

Logits are ``[num_tokens, vocab]`` with row i the logits that produced ``tokens[i]`` (the backend shifts them).
Dividing by ``--rollout-temperature`` first makes the trainer's log-probs those of the distribution the rollout
engine sampled from, so old, rollout and current log-probs are comparable. Backends that shard the vocabulary
compute the same quantities with their own parallel kernels.
"""

import torch


def _tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    # float32 at least: bf16 log-softmax over a large vocabulary loses the precision ratios need.
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return torch.log_softmax(logits / temperature, dim=-1)


def log_probs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log p(tokens[i])`` under ``softmax(logits[i] / temperature)``, shape ``[num_tokens]``."""
    return log_probs_and_entropy(logits, tokens, temperature, "none")[0]


def log_probs_and_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float, entropy: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_probs_from_logits`` and, from the same log-softmax, the entropy of each row's distribution (shape
    ``[num_tokens]``): ``"none"``, ``"detached"`` (for logging, no gradient) or ``"grad"`` (part of the loss)."""
    if entropy not in ("none", "detached", "grad"):
        raise ValueError(f"entropy must be 'none', 'detached' or 'grad', got {entropy!r}")
    log_p = _tempered_log_softmax(logits, temperature)
    log_probs = log_p.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    if entropy == "none":
        return log_probs, None
    if entropy == "detached":
        log_p = log_p.detach()
    return log_probs, -(log_p.exp() * log_p).sum(-1)
