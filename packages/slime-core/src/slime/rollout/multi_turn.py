"""``multi_turn_tools``: a generate function for tool-using rollouts (``--custom-generate-function-path
multi_turn_tools``).

Token in, token out: each model turn is the engine continuing the sample's own ids, and the tool responses are
tokenized once and appended after it, so a response's ids are exactly what the engine produced plus the tools' ids,
and the conversation is never re-tokenized. Tool tokens carry loss mask 0 (no loss, KL or entropy on them) and no
log-probs. A turn with ``<tool_call>``s (``slime.rollout.tools``) gets their responses and another turn; a turn
without one is the answer. Limits: ``--max-turns`` model turns, and the response budget (``max_new_tokens``: the
whole response, tool tokens included); a sample that would need more is TRUNCATED.

An aborted sample keeps its response, and with ``--partial-rollout`` continues from it (mid-turn too: where the
current turn began is kept in its metadata). ``metadata["round_number"]`` counts its model turns, which the
``multi_turn/*`` metrics report (``--log-multi-turn``).
"""

import argparse
import asyncio
from typing import Any

from slime.backends import RolloutEngine
from slime.rollout.generate import prompt_tokenizer, tokenize_prompt
from slime.rollout.tools import (
    IM_END,
    generation_prompt,
    parse_tool_calls,
    registered_tools,
    run_tool_call,
    tool_responses_text,
)
from slime.types import Sample, Status

ROUNDS_KEY = "round_number"  # slime's metadata key, read by the multi_turn/* metrics
TURN_START_KEY = "turn_start"  # response position (tokens) where the current model turn began


async def multi_turn_tools_generate(
    args: argparse.Namespace, sample: Sample, sampling_params: dict[str, Any], engine: RolloutEngine
) -> Sample:
    """Alternate model turns and tool calls until an answer, a limit, or an abort."""
    tokenize_prompt(args, sample)
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    budget = sampling_params.get("max_new_tokens")
    tools = registered_tools()
    sample.metadata.setdefault(ROUNDS_KEY, 0)
    while True:
        turn_start = sample.metadata.setdefault(TURN_START_KEY, sample.response_length)
        await engine.generate(sample, sampling_params)  # the engine counts the response so far against the budget
        turn = sample.tokens[sample.prompt_length + turn_start :]
        if sample.status not in (Status.COMPLETED, Status.TRUNCATED):
            return sample  # aborted: continues from here in a later rollout (--partial-rollout)
        if turn:
            sample.metadata[ROUNDS_KEY] += 1
        calls = parse_tool_calls(tokenizer.decode(turn))
        if sample.status is Status.TRUNCATED or not calls:
            return sample
        if sample.metadata[ROUNDS_KEY] >= args.max_turns:
            sample.status = Status.TRUNCATED  # it asked for tools after its last allowed turn
            return sample
        results = await asyncio.gather(
            *(run_tool_call(call, tools, args.tool_timeout, args.tool_concurrency) for call in calls)
        )
        text = tool_responses_text(results, turn_closed=turn[-1] == im_end_id, next_turn=generation_prompt(tokenizer))
        ids = tokenizer.encode(text, add_special_tokens=False)
        room = len(ids) if budget is None else budget - sample.response_length
        if len(ids) > room:
            ids = ids[: max(room, 0)]
            text = tokenizer.decode(ids)
            sample.status = Status.TRUNCATED
        sample.append_response_tokens(tokens=ids, trainable=False, text=text)
        sample.metadata[TURN_START_KEY] = sample.response_length
        if sample.status is Status.TRUNCATED:
            return sample
