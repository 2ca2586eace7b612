"""The ``sft`` rollout function: supervised samples built from the data, with no generation.

Each prompt becomes one sample whose tokens are the prompt's ids followed by its answer's ids and the tokenizer's eos
id; the answer (with the eos) is the sample's response, so the loss mask (all ones over the response) trains on the
answer only. Train with ``--rollout-function-path sft --loss-type sft_loss``.

The answer is the row's ``metadata["response"]`` when it has one (e.g. ``\\boxed{7}`` for label ``7``), else its
label. Evaluation (``evaluation=True``) generates as usual, so an SFT run can still report ``eval/*`` rewards.

Multi-turn SFT: a prompt that is a list of messages (no ``--apply-chat-template``) is a whole conversation. Its
tokens and loss mask come from ``--loss-mask-type`` (``slime.rollout.loss_mask``: assistant turns, tool calls
included, train; system, user and tool turns do not), and the response starts at its first trained token.
"""

import argparse
from typing import Any

from slime.backends import RolloutEngine
from slime.errors import DataError
from slime.rollout.default import RolloutOutput, generate_rollout
from slime.rollout.generate import prompt_tokenizer, tokenize_prompt
from slime.rollout.loss_mask import conversation_tokens
from slime.types import Sample, Status

SFT_RESPONSE_KEY = "response"  # metadata key of the answer text; the label is used when it is missing


def answer_text(sample: Sample) -> str:
    answer = sample.metadata.get(SFT_RESPONSE_KEY, sample.label)
    if answer is None:
        raise ValueError(f"sample {sample.index}: SFT needs an answer: metadata['{SFT_RESPONSE_KEY}'] or a label")
    return str(answer)


def make_sft_sample(args: argparse.Namespace, sample: Sample) -> Sample:
    """Fill ``sample`` in place: tokens = prompt + answer + eos, response = the answer, loss on the response only."""
    if isinstance(sample.prompt, list):
        return make_conversation_sample(args, sample)
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


def make_conversation_sample(args: argparse.Namespace, sample: Sample) -> Sample:
    """Fill ``sample`` in place from a message-list prompt: the response runs from its first trained token."""
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    token_ids, loss_mask = conversation_tokens(
        tokenizer, sample.prompt, sample.metadata.get("tools"), args.loss_mask_type
    )
    if 1 not in loss_mask:
        raise DataError(
            f"sample {sample.index}: its conversation has no assistant turn to train on (--loss-mask-type "
            f"{args.loss_mask_type})"
        )
    first = loss_mask.index(1)
    sample.tokens = token_ids
    sample.response_length = len(token_ids) - first
    sample.response = tokenizer.decode(token_ids[first:])
    sample.loss_mask = loss_mask[first:]
    sample.rollout_log_probs = None
    sample.reward = 0.0
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
