"""The eval function's generation: every eval dataset generated concurrently, each with its own n and sampling."""

import argparse
import asyncio
import copy

from ray.experimental import tqdm_ray

from slime.backends import RolloutEngine
from slime.eval.datasets import EvalDatasetConfig, EvalResult, eval_dataset_configs, eval_prompts
from slime.rollout.generate import generate_group
from slime.rollout.sample_hooks import current_rollout_id
from slime.types import Sample


def _groups(args: argparse.Namespace, config: EvalDatasetConfig) -> list[list[Sample]]:
    prompts = eval_prompts(args, config)
    groups = []
    for group_index, prompt in enumerate(prompts):
        group = []
        for copy_index in range(config.n_samples_per_eval_prompt):
            sample = copy.deepcopy(prompt)
            sample.group_index = group_index
            sample.index = group_index * config.n_samples_per_eval_prompt + copy_index
            # Only a path the eval config chose goes on the sample; --custom-rm-path applies anyway, and errors
            # then name that flag rather than the sample.
            if config.custom_rm_path != args.custom_rm_path:
                sample.custom_rm_path = config.custom_rm_path
            if config.rm_type is not None:
                sample.metadata["rm_type"] = config.rm_type
            group.append(sample)
        groups.append(group)
    return groups


async def _eval_dataset(args: argparse.Namespace, config: EvalDatasetConfig, engine: RolloutEngine) -> EvalResult:
    params = config.sampling_params(args)
    prompt_groups = _groups(args, config)
    progress = tqdm_ray.tqdm(desc=f"eval {config.name}", total=sum(map(len, prompt_groups)), unit="sample")

    async def generate_counted(group: list[Sample]) -> list[Sample]:
        samples = await generate_group(args, group, params, engine, evaluation=True)
        progress.update(len(samples))
        return samples

    try:
        groups = await asyncio.gather(*(generate_counted(group) for group in prompt_groups))
    finally:
        progress.close()
    return EvalResult(config.name, config.n_samples_per_eval_prompt, [s for group in groups for s in group])


async def generate_eval(args: argparse.Namespace, rollout_id: int, engine: RolloutEngine) -> dict[str, EvalResult]:
    """Run every eval dataset concurrently; results by dataset name."""
    current_rollout_id.set(rollout_id)  # for the sample hooks
    configs = eval_dataset_configs(args)
    results = await asyncio.gather(*(_eval_dataset(args, config, engine) for config in configs))
    return {result.name: result for result in results}
