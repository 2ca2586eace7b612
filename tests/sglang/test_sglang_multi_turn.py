"""The ``multi_turn_tools`` generate function against the shared real SGLang deployment (two CPU engines, a router).

A tiny random model writes no tool calls by itself, so the tests constrain its output with SGLang's own ``regex``
sampling parameter: every turn the engine generates is a real generation (its ids and log-probs are the engine's),
limited to the tool calls a test needs. ``RecordingEngine`` passes each call through to the real engine and keeps
the ids it was sent and the ids it added, so a test can tell the engine's tokens from the tools'.
"""

import asyncio
import json
import re
import time
from types import SimpleNamespace

import pytest
import torch

from slime.config.arguments import parse_args
from slime.hookspecs import hookimpl
from slime.metrics.rollout import multi_turn_metrics
from slime.plugins import register_plugin, unregister_plugin
from slime.rl.losses import LossBatch, policy_loss
from slime.rl.reduction import make_reducer
from slime.rollout import event_loop
from slime.rollout.generate import prompt_tokenizer
from slime.rollout.multi_turn import multi_turn_tools_generate
from slime.rollout.sampling import rollout_sampling_params
from slime.rollout.tools import Tool, tool_responses_text
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import Sample, Status

PROMPT = "<|im_start|>user\nWhat is 12+34?<|im_end|>\n<|im_start|>assistant\n"
NEXT_TURN = "<|im_start|>assistant\n"


def call(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


CALCULATOR_CALL = call("calculator", {"expression": "12+34"})


class RecordingEngine:
    """The real engine; each ``generate`` records the ids it was sent and the ids the engine appended."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.sent: list[list[int]] = []
        self.produced: list[list[int]] = []

    async def generate(self, sample: Sample, sampling_params: dict) -> Sample:
        before = len(sample.tokens)
        self.sent.append(list(sample.tokens))
        result = await self.engine.generate(sample, sampling_params)
        self.produced.append(list(sample.tokens[before:]))
        return result

    async def abort(self) -> None:
        await self.engine.abort()


async def _raises(**arguments):
    raise RuntimeError("sandbox down")


async def _hangs(**arguments):
    await asyncio.sleep(3600)


async def _long_output(**arguments):
    return "7" * 600  # digits are one token each: 600 tokens


TEST_TOOLS = [Tool(f.__name__.lstrip("_"), "", {}, f) for f in (_raises, _hangs, _long_output)]


@hookimpl
def slime_register_tools(register) -> None:
    for tool in TEST_TOOLS:
        register(tool.name, tool)


@pytest.fixture(scope="module", autouse=True)
def test_tools():
    register_plugin(SimpleNamespace(slime_register_tools=slime_register_tools), "multi-turn-test-tools")
    yield
    unregister_plugin("multi-turn-test-tools")


def make_args(engine_args, *extra: str):
    return parse_args(
        [
            "--hf-checkpoint", engine_args.hf_checkpoint, "--output-dir", engine_args.output_dir,
            "--rollout-max-response-len", "1024", "--custom-generate-function-path", "multi_turn_tools", *extra,
        ]
    )  # fmt: skip


def forced(args, regex: str, max_new_tokens: int | None = None) -> dict:
    params = rollout_sampling_params(args) | {"regex": regex}
    if max_new_tokens is not None:
        params["max_new_tokens"] = max_new_tokens
    return params


def generate(args, engine, params, sample: Sample | None = None) -> tuple[Sample, RecordingEngine]:
    sample = sample or Sample(index=0, prompt=PROMPT)
    recording = RecordingEngine(engine)
    event_loop.run(multi_turn_tools_generate(args, sample, params, recording))
    return sample, recording


def responses_ids(tokenizer, turn: list[int], results: list[str]) -> list[int]:
    """The ids of the tool responses after ``turn``, which may have ended at <|im_end|> or at another stop token
    (with a grammar, SGLang ends a turn at any of the tokenizer's stop tokens)."""
    closed = turn[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    return tokenizer.encode(tool_responses_text(results, closed, NEXT_TURN), add_special_tokens=False)


def is_turn(tokenizer, turn: list[int], text: str) -> bool:
    """``turn`` is ``text`` and then one stop token."""
    return tokenizer.decode(turn[:-1]) == text and tokenizer.decode(turn[-1:]) in ("<|im_end|>", "<|endoftext|>")


def mask(*parts: tuple[list[int], int]) -> list[int]:
    return [trained for ids, trained in parts for _ in ids]


@pytest.fixture(scope="module")
def three_turns(engine_args, engine):
    """A calculator call in every turn, up to --max-turns 3."""
    args = make_args(engine_args, "--max-turns", "3")
    return (args, *generate(args, engine, forced(args, re.escape(CALCULATOR_CALL))))


def test_response_is_the_engines_ids_then_the_tools_ids_in_order(three_turns):
    args, sample, recording = three_turns
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False)

    assert sample.status is Status.TRUNCATED  # the third turn asked for a tool once more
    assert sample.metadata["round_number"] == 3 and len(recording.produced) == 3
    turns = recording.produced
    assert all(is_turn(tokenizer, turn, CALCULATOR_CALL) for turn in turns)
    tools = [responses_ids(tokenizer, turn, ["46"]) for turn in turns[:2]]  # the calculator's answer to 12+34
    assert sample.tokens == prompt_ids + turns[0] + tools[0] + turns[1] + tools[1] + turns[2]
    # Never re-tokenized: each turn was sent exactly the ids that came before it.
    assert recording.sent == [prompt_ids, prompt_ids + turns[0] + tools[0], sample.tokens[: -len(turns[2])]]

    assert sample.loss_mask == mask((turns[0], 1), (tools[0], 0), (turns[1], 1), (tools[1], 0), (turns[2], 1))
    log_probs = sample.rollout_log_probs
    assert len(log_probs) == sample.response_length
    assert all(
        lp == 0.0 for lp, m in zip(log_probs, sample.loss_mask, strict=True) if m == 0
    )  # tools have no log-probs
    assert all(lp <= 0.0 for lp in log_probs) and any(lp < 0.0 for lp in log_probs)  # the engine's

    metrics = multi_turn_metrics([sample], args.rollout_max_response_len)
    assert metrics["multi_turn/multi_turn_metric/round_number_mean"] == 3.0
    assert metrics["multi_turn/wo_obs_response_length/response_length_mean"] == sum(map(len, turns))


def test_tool_tokens_take_no_part_in_loss_kl_or_entropy(three_turns):
    args, sample, _ = three_turns
    args = parse_args(
        ["--hf-checkpoint", args.hf_checkpoint, "--use-kl-loss", "--kl-loss-coef", "0.5", "--entropy-coef", "0.1"]
    )
    sample.reward = 1.0
    batch = samples_to_train_batch(args, [sample])
    mask = torch.tensor(batch.loss_masks[0], dtype=torch.float64)
    assert mask.tolist() == sample.loss_mask and 0 < mask.sum() < len(mask)
    tool = mask == 0
    generator = torch.Generator().manual_seed(0)

    def loss_and_grads(perturb_tools: bool):
        values = {k: -torch.rand(len(mask), generator=generator, dtype=torch.float64) for k in ("lp", "ref", "ent")}
        if perturb_tools:  # anything at all on the tool tokens
            values = {k: torch.where(tool, v * 100 - 7, v) for k, v in values.items()}
        log_probs = values["lp"].requires_grad_()
        entropy = values["ent"].neg().requires_grad_()
        loss_batch = LossBatch(
            response_lengths=batch.response_lengths,
            loss_masks=mask,
            log_probs=log_probs,
            entropy=entropy,
            old_log_probs=values["lp"].detach() + 0.01,
            ref_log_probs=values["ref"],
            advantages=torch.full_like(mask, 0.7),
        )
        reducer = make_reducer(batch.response_lengths, mask, calculate_per_token_loss=False)
        loss, metrics = policy_loss(args, loss_batch, reducer)
        loss.backward()
        return metrics, log_probs.grad, entropy.grad

    generator.manual_seed(0)
    metrics, lp_grad, ent_grad = loss_and_grads(perturb_tools=False)
    generator.manual_seed(0)
    perturbed, _, _ = loss_and_grads(perturb_tools=True)
    for name in ("loss", "pg_loss", "kl_loss", "entropy_loss"):
        assert torch.equal(metrics[name], perturbed[name]), name
    assert lp_grad[tool].abs().sum() == 0 and ent_grad[tool].abs().sum() == 0
    assert lp_grad[~tool].abs().sum() > 0 and ent_grad[~tool].abs().sum() > 0


def test_a_turn_without_a_tool_call_is_the_answer(engine_args, engine):
    args = make_args(engine_args)
    sample, recording = generate(args, engine, forced(args, re.escape("The answer is 46.")))
    assert sample.status is Status.COMPLETED and sample.metadata["round_number"] == 1
    assert sample.loss_mask == [1] * sample.response_length and len(recording.produced) == 1


def test_a_malformed_call_a_failing_and_a_hanging_tool_become_observations(engine_args, engine):
    args = make_args(engine_args, "--max-turns", "2", "--tool-timeout", "1")
    turn = call("raises", {}) + call("hangs", {}) + "<tool_call>\n{name: calculator}\n</tool_call>"
    started = time.monotonic()
    sample, recording = generate(args, engine, forced(args, re.escape(turn)))
    tokenizer = prompt_tokenizer(args.hf_checkpoint)

    with pytest.raises(json.JSONDecodeError) as bad_json:
        json.loads("\n{name: calculator}\n")
    results = [
        "Error: tool 'raises' failed: RuntimeError: sandbox down",
        "Error: tool 'hangs' timed out after 1 s",
        f"Error: the tool call is not valid JSON ({bad_json.value})",
    ]
    first, second = recording.produced
    assert sample.tokens[len(recording.sent[0]) :] == first + responses_ids(tokenizer, first, results) + second
    assert is_turn(tokenizer, second, turn)  # the run went on after the errors
    assert sample.status is Status.TRUNCATED and sample.metadata["round_number"] == 2
    assert time.monotonic() - started < 120  # the hanging tool held the sample for its timeout, not for an hour


def test_the_budget_cuts_the_tool_response_and_truncates(engine_args, engine):
    args = make_args(engine_args)
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    turn = call("long_output", {})
    budget = len(turn.encode()) + 1 + 50  # a turn has at most one token per byte, plus <|im_end|>
    sample, recording = generate(args, engine, forced(args, re.escape(turn), max_new_tokens=budget))

    (first,) = recording.produced
    tool_ids = responses_ids(tokenizer, first, ["7" * 600])
    assert sample.response_length == budget and sample.status is Status.TRUNCATED
    assert sample.tokens[-budget:] == first + tool_ids[: budget - len(first)]
    assert sample.loss_mask == mask((first, 1), (tool_ids[: budget - len(first)], 0))


def test_the_budget_holds_over_several_turns(engine_args, engine):
    args = make_args(engine_args)
    sample, recording = generate(args, engine, forced(args, re.escape(CALCULATOR_CALL), max_new_tokens=200))
    assert sample.response_length == 200 and sample.status is Status.TRUNCATED
    assert sample.metadata["round_number"] >= 2
    assert sum(sample.loss_mask) == sum(map(len, recording.produced))


def test_an_aborted_turn_continues_where_it_stopped(engine_args, engine):
    args = make_args(engine_args, "--max-turns", "3")
    tokenizer = prompt_tokenizer(args.hf_checkpoint)
    sample = Sample(index=0, prompt=PROMPT)
    recording = RecordingEngine(engine)

    async def abort_during_the_second_turn():
        task = asyncio.create_task(
            multi_turn_tools_generate(args, sample, forced(args, re.escape(CALCULATOR_CALL)), recording)
        )
        client = engine.client
        while not (len(recording.sent) == 2 and client.in_flight.get(client.epoch)):
            await asyncio.sleep(0.005)
        await engine.abort()
        return await task

    event_loop.run(abort_during_the_second_turn())
    assert sample.status is Status.ABORTED and sample.metadata["round_number"] == 1
    cut = tokenizer.decode(recording.produced[1])  # what the second turn had when it was aborted (maybe nothing)
    assert CALCULATOR_CALL.startswith(cut) and cut != CALCULATOR_CALL

    # The next rollout (--partial-rollout sets it PENDING) continues the turn; the regex covers the rest of the call.
    sample.status = Status.PENDING
    rest = CALCULATOR_CALL[len(cut) :]
    event_loop.run(multi_turn_tools_generate(args, sample, forced(args, re.escape(rest)), recording))
    second = recording.produced[1] + recording.produced[2]
    assert is_turn(tokenizer, second, CALCULATOR_CALL)
    # Read as one turn: the calculator ran on the call the two parts make.
    first, third = recording.produced[0], recording.produced[3]
    tools = [responses_ids(tokenizer, turn, ["46"]) for turn in (first, second)]
    assert sample.tokens[len(recording.sent[0]) :] == first + tools[0] + second + tools[1] + third
    assert sample.metadata["round_number"] == 3
    assert sample.loss_mask == mask((first, 1), (tools[0], 0), (second, 1), (tools[1], 0), (third, 1))
