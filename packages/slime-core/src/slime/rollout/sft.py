"""The ``sft`` rollout function: supervised samples built from the data, with no generation.

Each prompt becomes one sample whose tokens are the prompt's ids followed by its answer's ids and the tokenizer's eos
id; the answer (with the eos) is the sample's response, so the loss mask (all ones over the response) trains on the
answer only. Train with ``--rollout-function-path sft --loss-type sft_loss``.

The answer is the row's ``metadata["response"]`` when it has one (e.g. ``\\boxed{7}`` for label ``7``), else its
label. Evaluation (``evaluation=True``) generates as usual, so an SFT run can still report ``eval/*`` rewards.
"""

import argparse
from typing import Any

from slime.backends import RolloutEngine
from slime.rollout.default import RolloutOutput, generate_rollout
from slime.rollout.generate import prompt_tokenizer, tokenize_prompt
from slime.types import Sample, Status

SFT_RESPONSE_KEY = "response"  # metadata key of the answer text; the label is used when it is missing


def answer_text(sample: Sample) -> str:
    answer = sample.metadata.get(SFT_RESPONSE_KEY, sample.label)
    if answer is None:
        raise ValueError(f"sample {sample.index}: SFT needs an answer: metadata['{SFT_RESPONSE_KEY}'] or a label")
    return str(answer)


def make_sft_sample(args: argparse.Namespace, sample: Sample) -> Sample:
    """Fill ``sample`` in place: tokens = prompt + answer + eos, response = the answer, loss on the response only."""
    tokenize_prompt(args, sample)  # the prompt ids exactly as generation would send them
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    answer = answer_text(sample)
    # Tokenized apart from the prompt, as the model would produce it after the prompt at generation time.
    response_ids = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
    sample.tokens = sample.tokens + response_ids
    sample.response = answer
    sample.response_length = len(response_ids)
    sample.loss_mask = [1] * len(response_ids)
    sample.rollout_log_probs = None  # nothing was sampled
    sample.reward = 0.0  # SFT has no reward; the batch still carries one per sample
    sample.status = Status.COMPLETED
    return sample


def sft_rollout(
    args: argparse.Namespace, rollout_id: int, data_source: Any, engine: RolloutEngine, evaluation: bool = False
) -> Any:
    """slime's rollout-function entry: ``--rollout-batch-size`` groups of SFT samples, or (eval) generation."""
    if evaluation:
        return generate_rollout(args, rollout_id, data_source, engine, evaluation=True)
    groups = data_source.get_samples(args.rollout_batch_size)
    for group in groups:
        for sample in group:
            sample.rollout_id = rollout_id
            make_sft_sample(args, sample)
    return RolloutOutput(groups=groups)
