"""From a rollout's samples to the ``TrainBatch`` the train backend consumes."""

import argparse

from slime.backends import TrainBatch
from slime.plugins import load_object
from slime.rl.rewards import postprocess_rewards, raw_rewards
from slime.types import Sample, Status


def samples_to_train_batch(args: argparse.Namespace, samples: list[Sample]) -> TrainBatch:
    """Rewards post-processed per prompt group (``samples`` in group order); masks default to all ones."""
    if args.custom_reward_post_process_path:
        post_process = load_object(args.custom_reward_post_process_path, "--custom-reward-post-process-path")
        raw, rewards = post_process(args, samples)
    else:
        raw = raw_rewards(samples, args.reward_key)
        rewards = postprocess_rewards(args, raw)
    loss_masks = []
    for sample in samples:
        mask = sample.loss_mask if sample.loss_mask is not None else [1] * sample.response_length
        if sample.remove_sample:
            mask = [0] * sample.response_length
        if len(mask) != sample.response_length:
            raise ValueError(f"sample {sample.index}: loss mask has {len(mask)} entries for {sample.response_length}")
        loss_masks.append(mask)
    has_log_probs = all(sample.rollout_log_probs is not None for sample in samples)
    return TrainBatch(
        tokens=[sample.tokens for sample in samples],
        response_lengths=[sample.response_length for sample in samples],
        loss_masks=loss_masks,
        rewards=[float(r) for r in rewards],
        raw_rewards=[float(r) for r in raw],
        truncated=[sample.status is Status.TRUNCATED for sample in samples],
        sample_indices=[sample.index for sample in samples],
        rollout_log_probs=[sample.rollout_log_probs for sample in samples] if has_log_probs else None,
        metadata=[sample.train_metadata or {} for sample in samples],
    )
