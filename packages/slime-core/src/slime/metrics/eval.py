"""``eval/*`` metrics of one evaluation: per dataset, its mean reward, truncation, lengths and pass@k (as slime)."""

from collections.abc import Mapping, Sequence
from typing import Any

from slime.metrics.rollout import pass_at_k_metrics, sample_metrics
from slime.types import Sample


def eval_metrics(
    results: Mapping[str, Sequence[Sample]],
    n_samples_per_prompt: Mapping[str, int] | int,
    *,
    reward_key: str | None = None,
    log_passrate: bool = False,
    group_rewards: bool = True,
) -> dict[str, Any]:
    """``eval/<name>`` (mean reward), ``eval/<name>-truncated_ratio``, ``eval/<name>/...`` and ``eval/<name>-pass@k``.

    ``results`` maps each eval dataset's name to its samples, in consecutive prompt groups; ``n_samples_per_prompt``
    is each dataset's own group size (or one size for all), which pass@k uses.
    """
    metrics: dict[str, Any] = {}
    for name, samples in results.items():
        n = n_samples_per_prompt if isinstance(n_samples_per_prompt, int) else n_samples_per_prompt[name]
        rewards = [sample.get_reward_value(reward_key) for sample in samples]
        per_sample = sample_metrics(samples, rewards, group_rewards)
        metrics[f"eval/{name}"] = sum(rewards) / len(rewards)
        metrics[f"eval/{name}-truncated_ratio"] = per_sample["truncated_ratio"]
        metrics |= {f"eval/{name}/{key}": value for key, value in per_sample.items()}
        if log_passrate:
            metrics |= pass_at_k_metrics(rewards, n, f"eval/{name}-")
    return metrics
