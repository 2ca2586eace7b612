"""slime's ``slime.rollout.sglang_rollout``, for code written against slime.

``GenerateState(args)``: the prompt tokenizer (``.tokenizer``) and the rollout's base sampling parameters
(``.sampling_params``). ``generate(args, sample, sampling_params)``: slime's default generation of one sample, on
the engine of the rollout that calls it. ``generate_rollout(args, rollout_id, data_source, evaluation=False)``:
slime's default rollout function (its default ``--rollout-function-path``), returning ``RolloutFnTrainOutput`` /
``RolloutFnEvalOutput``. All three run slime-core's own code.
"""

import argparse
from typing import Any

from slime.rollout import default
from slime.rollout.base_types import RolloutFnEvalOutput, RolloutFnTrainOutput
from slime.rollout.generate import default_generate, prompt_tokenizer
from slime.rollout.sampling import rollout_sampling_params
from slime.rollout.signatures import current_engine, slime_eval_data
from slime.types import Sample


class GenerateState:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tokenizer = prompt_tokenizer(args.hf_checkpoint)  # loaded once per process
        self.processor = None  # no multimodal inputs yet
        self.sampling_params = rollout_sampling_params(args)


async def generate(args: argparse.Namespace, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
    return await default_generate(args, sample, sampling_params, current_engine())


def generate_rollout(
    args: argparse.Namespace, rollout_id: int, data_source: Any, evaluation: bool = False
) -> RolloutFnTrainOutput | RolloutFnEvalOutput:
    output = default.generate_rollout(args, rollout_id, data_source, current_engine(), evaluation=evaluation)
    if evaluation:
        return RolloutFnEvalOutput(data=slime_eval_data(args, output))
    return RolloutFnTrainOutput(samples=output.groups, metrics=output.metrics)
