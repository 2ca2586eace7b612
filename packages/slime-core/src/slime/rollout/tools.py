"""Tools for multi-turn rollouts: what a tool plugin registers, reading the model's calls, running them.

Calls and results use Qwen's chat format (ChatML): the model writes ``<tool_call>{"name": ..., "arguments": {...}}
</tool_call>`` in its turn, and the results come back as one user turn of ``<tool_response>`` blocks, exactly as
Qwen's chat template renders ``role: "tool"`` messages. Whatever goes wrong with a call (unreadable JSON, an unknown
tool, a tool that raises or outlives its timeout) becomes the text of its response, so the model sees the error and
the rollout goes on.
"""

import asyncio
import inspect
import json
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from slime import plugins
from slime.errors import PluginError

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHATML_GENERATION_PROMPT = IM_START + "assistant\n"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_TOOL_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + "(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class Tool:
    """A function the model can call, registered by its name through ``slime_register_tools``.

    ``function`` is called with the call's arguments as keywords and returns the result (text, or anything
    ``json.dumps`` takes). An ``async`` function runs on the rollout's event loop; a plain one runs in a worker
    thread, which keeps running if it outlives the timeout (write tools that may hang as ``async``).
    """

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    function: Callable[..., Any]

    def schema(self) -> dict[str, Any]:
        """The tool as chat templates and ``--tool-key`` data list it (OpenAI's function format)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    error: str | None = None  # why the call could not be read; it is answered with the error instead of run


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every ``<tool_call>`` of one model turn, in order; an unreadable one comes back with its ``error`` set."""
    bodies = _TOOL_CALL.findall(text)
    calls = [_parse_call(body) for body in bodies]
    if text.count(TOOL_CALL_OPEN) > len(bodies):  # the turn ended inside a call
        calls.append(ToolCall("", {}, f"{TOOL_CALL_OPEN} without {TOOL_CALL_CLOSE}"))
    return calls


def _parse_call(body: str) -> ToolCall:
    try:
        call = json.loads(body)
    except json.JSONDecodeError as exc:
        return ToolCall("", {}, f"the tool call is not valid JSON ({exc})")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
        return ToolCall("", {}, 'a tool call must be a JSON object with a "name" string')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    if not isinstance(arguments, dict):
        return ToolCall(call["name"], {}, f'the "arguments" of a call to {call["name"]!r} must be a JSON object')
    return ToolCall(call["name"], arguments)


def registered_tools() -> dict[str, Tool]:
    """Every tool the installed plugins register (``slime_register_tools``), by name."""
    tools = {}
    for entry in plugins.registry("tools").entries.values():
        tool = entry.obj
        if not isinstance(tool, Tool) or tool.name != entry.name:
            raise PluginError(
                f"{entry.plugin.describe()} registered tool '{entry.name}' as {tool!r}: expected a "
                f"slime.rollout.tools.Tool named '{entry.name}'"
            )
        tools[entry.name] = tool
    return tools


async def run_tool_call(call: ToolCall, tools: Mapping[str, Tool], timeout: float, concurrency: int) -> str:
    """The response text of one call: the tool's result, or an error the model can read. Never raises (but is
    cancellable); at most ``concurrency`` tools run at a time on this event loop, each for at most ``timeout`` s."""
    if call.error is not None:
        return f"Error: {call.error}"
    tool = tools.get(call.name)
    if tool is None:
        return f"Error: unknown tool {call.name!r}; available: {', '.join(sorted(tools)) or 'none'}"
    async with _semaphore(concurrency):
        try:
            result = await asyncio.wait_for(_invoke(tool, call.arguments), timeout)
        except TimeoutError:
            return f"Error: tool {call.name!r} timed out after {timeout:g} s"
        except Exception as exc:  # a tool's failure is the model's observation, not the rollout's crash
            return f"Error: tool {call.name!r} failed: {type(exc).__name__}: {exc}"
    return result if isinstance(result, str) else json.dumps(result)


async def _invoke(tool: Tool, arguments: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool.function):
        return await tool.function(**arguments)
    return await asyncio.to_thread(tool.function, **arguments)


# A semaphore belongs to one event loop (tests and the rollout manager may run several in turn).
_SEMAPHORES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _semaphore(concurrency: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    limit, semaphore = _SEMAPHORES.get(loop, (None, None))
    if limit != concurrency:
        semaphore = asyncio.Semaphore(concurrency)
        _SEMAPHORES[loop] = (concurrency, semaphore)
    return semaphore


@cache
def generation_prompt(tokenizer: Any) -> str:
    """What the chat template puts before an assistant turn (``<|im_start|>assistant\\n``, plus ``<think>\\n`` for
    some Qwen3 templates); ChatML's when the tokenizer has no template."""
    if not getattr(tokenizer, "chat_template", None):
        return CHATML_GENERATION_PROMPT
    messages = [{"role": "user", "content": "x"}]
    bare = tokenizer.apply_chat_template(messages, tokenize=False)
    with_prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return with_prompt[len(bare) :] if with_prompt.startswith(bare) else CHATML_GENERATION_PROMPT


def tool_responses_text(results: list[str], turn_closed: bool, next_turn: str) -> str:
    """The text between the model's turn and its next one: the turn's end (when the model stopped before
    ``<|im_end|>``), one user turn of ``<tool_response>`` blocks as Qwen's template renders tool messages, then
    ``next_turn`` (the template's generation prompt)."""
    end = "\n" if turn_closed else IM_END + "\n"
    blocks = "".join(f"\n<tool_response>\n{result}\n</tool_response>" for result in results)
    return f"{end}{IM_START}user{blocks}{IM_END}\n{next_turn}"
