"""``rollout/*``, ``multi_turn/*`` and ``passrate/*`` metrics of one rollout, from its samples (names as in slime).

Functions return plain dicts of floats and ints; prefixes are added here so every name lives in one place.
"""

import itertools
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from slime.rl.pass_at_k import pass_at_k
from slime.rollout.reward import count_reward_errors
from slime.types import Sample, Status

# slime's repetition rule: a response longer than 10k characters whose last 10k characters zlib-compress more than
# 10x is looping. Short responses are never counted, which also keeps this cheap for 100k samples.
REPETITION_WINDOW_CHARS = 10_000
REPETITION_MIN_RATIO = 10.0

# Per-sample training fields that are not quantities to average (ids, token ids, masks, nested data).
NOT_AVERAGED = frozenset(
    {
        "tokens",
        "loss_masks",
        "sample_indices",
        "rollout_ids",
        "rollout_mask_sums",
        "metadata",
        "multimodal_train_inputs",
        "source_names",
        "global_batch_sizes",
        "num_microbatches",
        "micro_batch_indices",
        "partition",
    }
)


def statistics(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``median``, ``max`` and ``min`` of a non-empty sequence."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("statistics of an empty sequence")
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "max": float(array.max()),
        "min": float(array.min()),
    }


def has_repetition(text: str) -> bool:
    """slime's rule: longer than 10k characters, and the last 10k compress more than 10x with zlib (level 9)."""
    if len(text) <= REPETITION_WINDOW_CHARS:
        return False
    tail = text[-REPETITION_WINDOW_CHARS:].encode("utf-8")
    return len(tail) / len(zlib.compress(tail, 9)) > REPETITION_MIN_RATIO


def zero_std_counts(samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, int]:
    """How many prompt groups got the same reward on every sample, by that reward: ``zero_std/count_<reward>``.

    Such groups carry no learning signal under group-normalised advantages. Groups are samples sharing a
    ``group_index``; the reward is rounded to one decimal as slime does (``count_1.0``, ``count_0.0``).
    """
    groups: dict[Any, list[float]] = defaultdict(list)
    for sample, reward in zip(samples, rewards, strict=True):
        if sample.group_index is not None:
            groups[sample.group_index].append(reward)
    counts: dict[str, int] = defaultdict(int)
    for group in groups.values():
        if all(reward == group[0] for reward in group):
            counts[f"zero_std/count_{round(group[0], 1)}"] += 1
    return dict(counts)


def trained_lengths(samples: Sequence[Sample]) -> list[int]:
    """Each sample's trained response tokens (its loss mask's sum). Several metrics need them: callers computing
    many metrics of one rollout pass them along, which saves a pass over every loss mask per metric."""
    return [sample.effective_response_length for sample in samples]


def sample_metrics(
    samples: Sequence[Sample],
    rewards: Sequence[float],
    group_rewards: bool = True,
    trained: Sequence[int] | None = None,
) -> dict[str, Any]:
    """What slime computes from any set of samples, rollout or eval, without prefix.

    ``response_len/*`` counts trained tokens (the loss mask; ``trained`` when already computed), as slime does;
    ``group_rewards`` adds the zero-std group counts (off for PPO, whose prompts are not sampled in groups).
    """
    if not samples:
        raise ValueError("no samples to compute metrics of")
    metrics: dict[str, Any] = {}
    lengths = trained if trained is not None else trained_lengths(samples)
    metrics |= {f"response_len/{name}": value for name, value in statistics(lengths).items()}
    if group_rewards:
        metrics |= zero_std_counts(samples, rewards)
    metrics["repetition_frac"] = sum(has_repetition(sample.response) for sample in samples) / len(samples)
    metrics["truncated_ratio"] = sum(sample.status == Status.TRUNCATED for sample in samples) / len(samples)
    return metrics


def _flatten(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 1-D sequences (lists, arrays or torch tensors) as one new flat array, and each one's length.

    Tensors are joined with one ``torch.cat`` and keep their dtype (bfloat16 becomes float32, which numpy lacks):
    converting 100k small tensors one by one, or the whole to float64, costs seconds. The array is a fresh copy,
    so callers may modify it in place.
    """
    if hasattr(values[0], "detach"):
        import torch  # already loaded by whoever made the tensors

        lengths = np.fromiter((v.numel() for v in values), dtype=np.int64, count=len(values))
        flat = torch.cat(list(values)).detach().cpu()
        if flat.dtype == torch.bfloat16 or flat.dtype == torch.float16:
            flat = flat.float()
        return flat.numpy(), lengths
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.float64, count=int(lengths.sum()))
    return flat, lengths


def _segment_sums(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The sum of each consecutive segment of ``flat`` (segments may be empty), as float64.

    Each segment is one sample's tokens, summed in the values' own dtype (float32 for float32 tensors, as the
    trainer computes them): asking reduceat to accumulate in float64 takes a slow casting path (seconds at 100k).
    """
    sums = np.zeros(len(lengths))
    nonempty = lengths > 0
    if nonempty.any():
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        # reduceat sums from each start to the next; without empty segments, the next start is this one's end.
        sums[nonempty] = np.add.reduceat(flat, starts)
    return sums


class _LossMasks:
    """The loss masks, flattened once and shared by every per-token field."""

    def __init__(self, loss_masks: Sequence[Any]) -> None:
        mask, self.lengths = _flatten(loss_masks)
        trained = _segment_sums(mask, self.lengths)
        self.counts = np.maximum(trained, 1.0)  # a sample with no trained token averages to 0, not NaN
        # With no masked-out token anywhere, multiplying by the mask changes nothing: skip it.
        self.mask = None if np.array_equal(trained, self.lengths) else mask.astype(np.float32, copy=False)

    def sample_means(self, key: str, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if not np.array_equal(lengths, self.lengths):
            raise ValueError(f"train data '{key}': per-token values and loss masks differ in length")
        if self.mask is not None:
            if flat.dtype.kind != "f":
                flat = flat.astype(np.float64)
            np.multiply(flat, self.mask, out=flat)  # in place: no second 50M-element array at 100k samples
        return _segment_sums(flat, lengths) / self.counts


def train_data_means(data: Mapping[str, Sequence[Any]], loss_masks: Sequence[Any] | None = None) -> dict[str, float]:
    """The mean of each per-sample training field, without prefix (``log_probs``, ``advantages``, ``rewards``, ...).

    A field holds one value per sample: a number (reward, length, flag) is averaged over samples; a sequence or
    tensor of per-token values is first averaged over the sample's response tokens (weighted by ``loss_masks``
    when given), then over samples, as slime's default per-sample loss reduction does. A sample with no trained
    token counts 0.
    """
    masks: _LossMasks | None = None
    means: dict[str, float] = {}
    for key, values in data.items():
        if key in NOT_AVERAGED or values is None or len(values) == 0:
            continue
        if np.ndim(values[0]) == 0:
            means[key] = float(np.mean([float(v) for v in values]))
            continue
        if loss_masks is not None and len(loss_masks) != len(values):
            raise ValueError(f"train data '{key}' has {len(values)} samples but loss_masks {len(loss_masks)}")
        flat, lengths = _flatten(values)
        if loss_masks is None:
            sample_means = _segment_sums(flat, lengths) / np.maximum(lengths, 1)
        else:
            masks = masks or _LossMasks(loss_masks)
            sample_means = masks.sample_means(key, flat, lengths)
        means[key] = float(sample_means.mean())
    return means


def rollout_metrics(
    samples: Sequence[Sample],
    *,
    reward_key: str | None = None,
    group_rewards: bool = True,
    drop_reasons: Mapping[str, int] | None = None,
    train_data: Mapping[str, Sequence[Any]] | None = None,
    loss_masks: Sequence[Any] | None = None,
    trained: Sequence[int] | None = None,
) -> dict[str, Any]:
    """``rollout/*`` of one rollout: sample metrics, raw reward, reward errors, dynamic-filter drops, train means.

    ``drop_reasons`` counts the groups the dynamic-sampling filter dropped, by reason; ``train_data`` holds
    per-sample training fields (post-processed ``rewards``, ``log_probs``, ``ref_log_probs``, ``advantages``,
    ``returns``, ``kl``, ...) whose means are logged under their own names.
    """
    rewards = [sample.get_reward_value(reward_key) for sample in samples]
    metrics = sample_metrics(samples, rewards, group_rewards, trained)
    metrics["raw_reward"] = sum(rewards) / len(rewards)
    metrics["reward_errors"] = count_reward_errors(samples)  # samples whose reward function raised or timed out
    for reason, count in (drop_reasons or {}).items():
        metrics[f"dynamic_filter/drop_{reason}"] = count
    if train_data:
        metrics |= train_data_means(train_data, loss_masks)
    return {f"rollout/{key}": value for key, value in metrics.items()}


def multi_turn_metrics(
    samples: Sequence[Sample], max_response_len: int | None = None, trained: Sequence[int] | None = None
) -> dict[str, Any]:
    """``multi_turn/*``: response length with and without observation (mask-0) tokens, and rounds per sample.

    ``response_length_clip_ratio`` (responses reaching ``max_response_len``) needs the limit; rounds come from
    ``metadata["round_number"]`` and are reported only when every sample has it.
    """
    raw = np.fromiter((s.response_length for s in samples), dtype=np.float64, count=len(samples))
    trained = np.asarray(trained if trained is not None else trained_lengths(samples), dtype=np.float64)
    metrics: dict[str, Any] = {
        "raw_response_length/response_length_mean": float(raw.mean()),
        "raw_response_length/response_length_max": float(raw.max()),
        "raw_response_length/response_length_min": float(raw.min()),
    }
    if max_response_len is not None:
        metrics["raw_response_length/response_length_clip_ratio"] = float((raw >= max_response_len).mean())
    metrics |= {
        "wo_obs_response_length/response_length_mean": float(trained.mean()),
        "wo_obs_response_length/response_length_max": float(trained.max()),
        "wo_obs_response_length/response_length_min": float(trained.min()),
    }
    rounds = [s.metadata.get("round_number") for s in samples]
    if all(r is not None for r in rounds):
        array = np.asarray(rounds, dtype=np.float64)
        metrics |= {
            "multi_turn_metric/round_number_mean": float(array.mean()),
            "multi_turn_metric/round_number_max": float(array.max()),
            "multi_turn_metric/round_number_min": float(array.min()),
        }
    return {f"multi_turn/{key}": value for key, value in metrics.items()}


def pass_at_k_metrics(rewards: Sequence[float], n: int, prefix: str) -> dict[str, float]:
    """``<prefix>pass@k`` for k = 1, 2, 4, ... <= n over consecutive groups of ``n``; none when n == 1, as slime."""
    if n <= 1:
        return {}
    return {f"{prefix}pass@{k}": value for k, value in pass_at_k(rewards, n).items()}


def passrate_metrics(rewards: Sequence[float], n_samples_per_prompt: int) -> dict[str, float]:
    """``passrate/pass@k`` of one rollout's raw rewards, in prompt groups of ``n_samples_per_prompt``."""
    return pass_at_k_metrics(rewards, n_samples_per_prompt, "passrate/")
