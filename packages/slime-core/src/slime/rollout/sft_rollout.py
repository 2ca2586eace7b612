"""slime's ``slime.rollout.sft_rollout``: the SFT rollout function its SFT scripts name
(``--rollout-function-path slime.rollout.sft_rollout.generate_rollout``), with slime's signature
``generate_rollout(args, rollout_id, data_buffer, evaluation=False)``. It runs core's ``sft`` rollout function
(``slime.rollout.sft``): a conversation's tokens and loss mask come from ``--loss-mask-type``. Where slime's refuses
evaluation, this one evaluates as the default rollout function does.
"""

import argparse
from typing import Any

from slime.rollout import sglang_rollout
from slime.rollout.base_types import RolloutFnEvalOutput, RolloutFnTrainOutput
from slime.rollout.sft import sft_rollout


def generate_rollout(
    args: argparse.Namespace, rollout_id: int, data_buffer: Any, evaluation: bool = False
) -> RolloutFnTrainOutput | RolloutFnEvalOutput:
    if evaluation:
        return sglang_rollout.generate_rollout(args, rollout_id, data_buffer, evaluation=True)
    output = sft_rollout(args, rollout_id, data_buffer, engine=None)  # SFT samples need no engine
    return RolloutFnTrainOutput(samples=output.groups, metrics=output.metrics)
