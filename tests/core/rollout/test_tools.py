"""Tool calls for multi-turn rollouts: reading them from a model turn, running them, writing their responses."""

import asyncio
import threading
import time

import pytest
from transformers import AutoTokenizer

from slime.plugins import registered_by, registry, resolve
from slime.rollout.multi_turn import multi_turn_tools_generate
from slime.rollout.tools import (
    Tool,
    ToolCall,
    generation_prompt,
    parse_tool_calls,
    registered_tools,
    run_tool_call,
    tool_responses_text,
)
from slime_testkit.tokenizer import QWEN_TOOLS_TEMPLATE, build_tokenizer


def test_well_formed_calls_in_order():
    text = (
        'Let me add.\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+2"}}\n</tool_call>\n'
        '<tool_call>{"name": "search", "arguments": "{\\"q\\": \\"x\\"}"}</tool_call><|im_end|>'
    )
    assert parse_tool_calls(text) == [
        ToolCall("calculator", {"expression": "1+2"}),
        ToolCall("search", {"q": "x"}),  # arguments written as a JSON string are read as the object
    ]


def test_no_call_is_an_answer():
    assert parse_tool_calls("The answer is 3.<|im_end|>") == []


@pytest.mark.parametrize(
    "text, error",
    [
        ("<tool_call>{name: calculator}</tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', '"name" string'),
        ('<tool_call>["calculator"]</tool_call>', '"name" string'),
        ('<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "calculator", "arguments": {"expression": "1+', "<tool_call> without </tool_call>"),
    ],
)
def test_malformed_calls_carry_an_error(text, error):
    (call,) = parse_tool_calls(text)
    assert call.error is not None and error in call.error


def test_a_bad_call_next_to_good_ones_keeps_its_place():
    calls = parse_tool_calls('<tool_call>{"name": "a"}</tool_call><tool_call>oops</tool_call><tool_call>{"name": "b')
    assert [(c.name, c.error is None) for c in calls] == [("a", True), ("", False), ("", False)]


async def _echo(**arguments):
    return arguments


def _upper(text: str) -> str:
    return text.upper()


def _raises(**arguments):
    raise RuntimeError("the sandbox is down")


async def _hangs(**arguments):
    await asyncio.sleep(3600)


TOOLS = {
    "echo": Tool("echo", "", {}, _echo),
    "upper": Tool("upper", "", {}, _upper),
    "raises": Tool("raises", "", {}, _raises),
    "hangs": Tool("hangs", "", {}, _hangs),
}


def run(call: ToolCall, timeout: float = 5.0, concurrency: int = 4) -> str:
    return asyncio.run(run_tool_call(call, TOOLS, timeout, concurrency))


def test_async_and_plain_tools_run_with_their_arguments():
    assert run(ToolCall("echo", {"a": 1})) == '{"a": 1}'  # a non-text result is sent as JSON
    assert run(ToolCall("upper", {"text": "abc"})) == "ABC"  # a plain function runs in a worker thread


def test_every_failure_is_an_observation():
    assert run(ToolCall("", {}, "the tool call is not valid JSON")) == "Error: the tool call is not valid JSON"
    assert run(ToolCall("nope", {})) == "Error: unknown tool 'nope'; available: echo, hangs, raises, upper"
    assert run(ToolCall("raises", {})) == "Error: tool 'raises' failed: RuntimeError: the sandbox is down"
    assert run(ToolCall("upper", {"wrong": 1})).startswith("Error: tool 'upper' failed: TypeError: ")
    started = time.monotonic()
    assert run(ToolCall("hangs", {}), timeout=0.3) == "Error: tool 'hangs' timed out after 0.3 s"
    assert time.monotonic() - started < 5


def test_at_most_concurrency_tools_run_at_once():
    running = peak = 0
    lock = threading.Lock()

    async def slow(**arguments):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0.05)
        with lock:
            running -= 1
        return "done"

    tools = {"slow": Tool("slow", "", {}, slow)}

    async def main():
        return await asyncio.gather(*(run_tool_call(ToolCall("slow", {}), tools, 5.0, 3) for _ in range(10)))

    assert asyncio.run(main()) == ["done"] * 10
    assert peak == 3


def test_responses_read_as_qwens_template_renders_tool_messages(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(tmp_path, chat_template=QWEN_TOOLS_TEMPLATE))
    calls = [{"type": "function", "function": {"name": "calculator", "arguments": {"expression": "1+2"}}}]
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": calls + [{"name": "echo", "arguments": {}}]},
        {"role": "tool", "content": "3"},
        {"role": "tool", "content": "Error: x"},
    ]
    # The model's turn ends at <|im_end|>; the template's newline after it belongs to what follows.
    before = tokenizer.apply_chat_template(messages[:2], tokenize=False).removesuffix("\n")
    after = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    next_turn = generation_prompt(tokenizer)
    assert next_turn == "<|im_start|>assistant\n"
    assert before + tool_responses_text(["3", "Error: x"], True, next_turn) == after
    # A turn that stopped without <|im_end|> (at a stop string) gets it from the responses' text.
    unclosed = before.removesuffix("<|im_end|>")
    assert unclosed + tool_responses_text(["3", "Error: x"], False, next_turn) == after


def test_generation_prompt_comes_from_the_chat_template():
    class Thinking:
        chat_template = "set"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt=False):
            text = "<|im_start|>user\nx<|im_end|>\n"
            return text + ("<|im_start|>assistant\n<think>\n" if add_generation_prompt else "")

    class NoTemplate:
        chat_template = None

    assert generation_prompt(Thinking()) == "<|im_start|>assistant\n<think>\n"
    assert generation_prompt(NoTemplate()) == "<|im_start|>assistant\n"


def test_multi_turn_tools_and_the_calculator_are_registered():
    assert resolve("generate_functions", "multi_turn_tools") is multi_turn_tools_generate
    assert registered_by("tools_calculator") == {"tools": ["calculator"]}
    assert registered_tools()["calculator"].schema()["function"]["name"] == "calculator"
    assert registry("tools").noun == "tool"
