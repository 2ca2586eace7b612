"""Generating one sample or one prompt group, reward included: what the rollout function and the eval function share.

A sample goes through its generate function (registered name or dotted path: the sample's own, else
``--custom-generate-function-path``, else ``default``; slime's signature or ours, ``slime.rollout.signatures``), then
``--rollout-sample-hook-path`` hooks, then its reward.
"""

import argparse
import asyncio
from functools import cache
from typing import Any

from slime.backends import RolloutEngine
from slime.data.dataset import load_tokenizer
from slime.plugins import resolve
from slime.rollout.reward import compute_group_rewards, compute_reward
from slime.rollout.sample_hooks import apply_sample_hooks
from slime.rollout.signatures import call_generate
from slime.types import Sample, Status


@cache
def prompt_tokenizer(path: str | None) -> Any:
    """The tokenizer prompts are encoded with (``--hf-checkpoint``), loaded once per process."""
    return load_tokenizer(path, "generation")


def tokenize_prompt(args: argparse.Namespace, sample: Sample) -> None:
    """Token ids of the prompt, computed once in slime and sent as ids (engines may tokenize text differently)."""
    if sample.tokens:
        return
    if not isinstance(sample.prompt, str):
        raise TypeError(f"sample {sample.index}: a message-list prompt needs --apply-chat-template to become text")
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    sample.tokens = tokenizer.encode(sample.prompt, add_special_tokens=False)


async def default_generate(
    args: argparse.Namespace, sample: Sample, sampling_params: dict[str, Any], engine: RolloutEngine
) -> Sample:
    """Single-turn generation: the engine continues the sample's response (from scratch, or a partial one)."""
    tokenize_prompt(args, sample)
    return await engine.generate(sample, sampling_params)


async def generate_and_reward(
    args: argparse.Namespace,
    sample: Sample,
    sampling_params: dict[str, Any],
    engine: RolloutEngine,
    evaluation: bool = False,
) -> Sample | list[Sample]:
    if sample.status in (Status.COMPLETED, Status.TRUNCATED) and sample.reward is not None:
        return sample  # finished in an earlier, partial rollout
    if args.partial_rollout and args.mask_offpolicy_in_partial_rollout and sample.response_length:
        # Tokens from an older policy stay in the context but do not train.
        sample.loss_mask = [0] * sample.response_length
    path = sample.generate_function_path or args.custom_generate_function_path or "default"
    generate = resolve("generate_functions", path, "--custom-generate-function-path")
    result = await call_generate(generate, args, sample, dict(sampling_params), engine, evaluation)
    result = await apply_sample_hooks(args, result, evaluation)
    if args.group_rm and not evaluation:
        return result  # the whole group is scored together afterwards
    for produced in result if isinstance(result, list) else [result]:
        if produced.status is not Status.ABORTED and produced.reward is None:
            await compute_reward(args, produced, evaluation=evaluation)
    return result


async def generate_group(
    args: argparse.Namespace,
    group: list[Sample],
    sampling_params: dict[str, Any],
    engine: RolloutEngine,
    evaluation: bool = False,
) -> list[Sample]:
    results = await asyncio.gather(
        *(generate_and_reward(args, sample, sampling_params, engine, evaluation) for sample in group)
    )
    samples = [s for result in results for s in (result if isinstance(result, list) else [result])]
    if args.group_rm and not evaluation and not any(s.status is Status.ABORTED for s in samples):
        await compute_group_rewards(args, samples)
    return samples
