"""Step keys: which x-axis each metric namespace is plotted against, and how rollout ids become steps (as slime)."""

import argparse

TRAIN_STEP = "train/step"
ROLLOUT_STEP = "rollout/step"
EVAL_STEP = "eval/step"
STEP_KEYS = (TRAIN_STEP, ROLLOUT_STEP, EVAL_STEP)

# Namespace -> its step key, exactly as slime defines its W&B step metrics.
NAMESPACE_STEP_KEYS = {
    "train": TRAIN_STEP,
    "rollout": ROLLOUT_STEP,
    "multi_turn": ROLLOUT_STEP,
    "passrate": ROLLOUT_STEP,
    "perf": ROLLOUT_STEP,
    "eval": EVAL_STEP,
}


def step_key_of(metric: str) -> str | None:
    """The step key a metric is plotted against (``rollout/raw_reward`` -> ``rollout/step``), or None if unknown."""
    return NAMESPACE_STEP_KEYS.get(metric.split("/", 1)[0])


def rollout_step(args: argparse.Namespace, rollout_id: int) -> int:
    """The ``rollout/step`` (and ``eval/step``) of a rollout id.

    With ``--wandb-always-use-train-step`` it is the number of optimizer steps taken before this rollout, so rollout
    and eval curves share the x-axis of ``train/*``.
    """
    if args.wandb_always_use_train_step:
        return rollout_id * args.rollout_batch_size * args.n_samples_per_prompt // args.global_batch_size
    return rollout_id


def train_step(args: argparse.Namespace, rollout_id: int, step_id: int) -> int:
    """The ``train/step`` of optimizer step ``step_id`` within rollout ``rollout_id``: optimizer steps so far."""
    return rollout_id * args.num_steps_per_rollout + step_id
