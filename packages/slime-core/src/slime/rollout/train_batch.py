"""From a rollout's samples to the ``TrainBatch`` the train backend consumes.

Per-token data goes into ``RaggedArray``s (int32 tokens, int8 masks, float32 log-probs: the engine computes them in
float32 and the trainer reads them as float32): one pass over the samples' lists at ~18 ns a value, after which
Ray moves each field as one buffer (a list of lists pickles value by value, ~50 ns each way).
``--custom-convert-samples-to-train-data-path`` replaces the conversion with slime's ``f(args, samples) -> dict``.
"""

import argparse
from typing import Any

import numpy as np

from slime.errors import PluginError
from slime.plugins import load_object
from slime.rl.reward_normalization import postprocess_rewards
from slime.types import RaggedArray, Sample, Status, TrainBatch


def convert_samples_to_train_batch(args: argparse.Namespace, samples: list[Sample]) -> TrainBatch:
    """The rollout's ``TrainBatch``: ours, or from slime's ``--custom-convert-samples-to-train-data-path``."""
    if not args.custom_convert_samples_to_train_data_path:
        return samples_to_train_batch(args, samples)
    flag = "--custom-convert-samples-to-train-data-path"
    convert = load_object(args.custom_convert_samples_to_train_data_path, flag)
    return train_batch_from_dict(convert(args, samples), f"{flag} {args.custom_convert_samples_to_train_data_path}")


def train_batch_from_dict(data: dict[str, Any], source: str) -> TrainBatch:
    """slime's train data (per-sample lists under its keys; ``raw_reward``, ``truncated``, ``sample_indices``,
    ``rollout_log_probs`` and ``metadata`` optional) as a ``TrainBatch``."""
    missing = [key for key in ("tokens", "response_lengths", "rewards", "loss_masks") if key not in data]
    if missing:
        raise PluginError(f"{source} returned train data without {', '.join(missing)}")
    n = len(data["tokens"])
    log_probs = data.get("rollout_log_probs")
    return TrainBatch(
        tokens=RaggedArray.from_lists(data["tokens"], "i"),
        response_lengths=[int(length) for length in data["response_lengths"]],
        loss_masks=RaggedArray.from_lists(data["loss_masks"], "b"),
        rewards=[float(r) for r in data["rewards"]],
        raw_rewards=[float(r) for r in data.get("raw_reward", data["rewards"])],
        truncated=[bool(t) for t in data.get("truncated", [False] * n)],
        sample_indices=list(data.get("sample_indices", range(n))),
        rollout_log_probs=None if log_probs is None else RaggedArray.from_lists(log_probs, "f"),
        metadata=list(data.get("metadata", [{}] * n)),
    )


def samples_to_train_batch(args: argparse.Namespace, samples: list[Sample]) -> TrainBatch:
    """Rewards post-processed per prompt group (``samples`` in group order); masks default to all ones.

    A sample whose reward failed (``Status.FAILED``: its 0 is not a score) trains no token and is left out of its
    group's reward statistics.
    """
    if args.custom_reward_post_process_path:
        post_process = load_object(args.custom_reward_post_process_path, "--custom-reward-post-process-path")
        raw, rewards = post_process(args, samples)
    else:
        raw = [sample.get_reward_value(args.reward_key) for sample in samples]
        rewards = postprocess_rewards(args, raw, [sample.status is not Status.FAILED for sample in samples])
    log_probs = [sample.rollout_log_probs for sample in samples]
    return TrainBatch(
        tokens=RaggedArray.from_lists((sample.tokens for sample in samples), "i"),
        response_lengths=[sample.response_length for sample in samples],
        loss_masks=loss_masks(samples),
        rewards=[float(r) for r in rewards],
        raw_rewards=[float(r) for r in raw],
        truncated=[sample.status is Status.TRUNCATED for sample in samples],
        sample_indices=[sample.index for sample in samples],
        rollout_log_probs=None if any(lp is None for lp in log_probs) else RaggedArray.from_lists(log_probs, "f"),
        metadata=[sample.train_metadata or {} for sample in samples],
        weight_versions=[newest_weight_version(sample) for sample in samples],
        rollout_routed_experts=routed_experts(samples) if args.use_rollout_routing_replay else None,
        teacher_log_probs=teacher_log_probs(samples) if args.use_opd and args.opd_type == "sglang" else None,
    )


def teacher_log_probs(samples: list[Sample]) -> RaggedArray:
    """Each sample's teacher log-probs (``--use-opd --opd-type sglang``), one per response token."""
    for sample in samples:
        if sample.teacher_log_probs is None or len(sample.teacher_log_probs) != sample.response_length:
            found = "none" if sample.teacher_log_probs is None else f"{len(sample.teacher_log_probs)} of them"
            raise ValueError(
                f"--use-opd --opd-type sglang: sample {sample.index} needs one teacher log-prob per response token "
                f"({sample.response_length}), found {found} (slime.rollout.on_policy_distillation's reward_func and "
                "post_process_rewards set them)"
            )
    return RaggedArray.from_lists((np.asarray(s.teacher_log_probs, dtype=np.float32).tolist() for s in samples), "f")


def routed_experts(samples: list[Sample]) -> list[np.ndarray]:
    """Each sample's engine routes (``--use-rollout-routing-replay``); a sample without them is an error."""
    missing = [sample.index for sample in samples if sample.rollout_routed_experts is None]
    if missing:
        raise ValueError(
            f"--use-rollout-routing-replay: samples {missing[:5]} carry no routed experts (a generate function must "
            'send "return_routed_experts": true to an engine, not the router (sglang-router 0.3.2 drops the field), '
            "and pass the meta_info to Sample.append_response_tokens)"
        )
    return [sample.rollout_routed_experts for sample in samples]


def newest_weight_version(sample: Sample) -> str:
    """The newest policy version that generated part of ``sample`` (a partial rollout spans several); "" if none.

    Only the trainer's versions count (numbers): engines that never got the trainer's weights (--debug-rollout-only)
    report SGLang's "default".
    """
    versions = [version for version in sample.weight_versions if version.isdigit()]
    return max(versions, key=int) if versions else ""


def loss_masks(samples: list[Sample]) -> RaggedArray:
    """Each sample's mask over its response tokens: all ones unless it set one; all zeros if it is removed or its
    reward failed."""
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum([sample.response_length for sample in samples], out=offsets[1:])
    values = np.ones(int(offsets[-1]), dtype=np.int8)  # most samples set no mask: no per-token pass for them
    for sample, start, end in zip(samples, offsets[:-1], offsets[1:], strict=True):
        if sample.remove_sample or sample.status is Status.FAILED:
            values[start:end] = 0
        elif sample.loss_mask is not None:
            if len(sample.loss_mask) != sample.response_length:
                raise ValueError(
                    f"sample {sample.index}: loss mask has {len(sample.loss_mask)} entries for {sample.response_length}"
                )
            values[start:end] = np.frombuffer(zeros_and_ones(sample), dtype=np.int8)
    return RaggedArray(values, offsets)


def zeros_and_ones(sample: Sample) -> bytes:
    """The sample's own loss mask as bytes: converted at C speed, and any entry other than 0 or 1 refused."""
    values = sample.loss_mask if isinstance(sample.loss_mask, list) else list(sample.loss_mask)
    try:
        mask = bytes(values)  # a float or an entry outside 0..255 raises here
    except (TypeError, ValueError):
        mask = None
    if mask is None or mask.translate(None, b"\x00\x01"):
        raise ValueError(f"sample {sample.index}: loss mask entries must be 0 or 1")
    return mask
