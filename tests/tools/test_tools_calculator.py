"""The calculator tool plugin: arithmetic from model text, evaluated without eval/exec, with its limits."""

import asyncio
import time

import pytest
from slime_tools_calculator.calculator import CALCULATOR, CalculatorError, evaluate, format_number

from slime.rollout.tools import ToolCall, registered_tools, run_tool_call


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12+34", 46),
        (" (12 + 34) * 2 ", 92),
        ("7/2", 3.5),
        ("2**10", 1024),
        ("-3 - -4", 1),
        ("+5", 5),
        ("1.5*4", 6.0),
        ("2**-1", 0.5),
        ("10**99", 10**99),
    ],
)
def test_arithmetic(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os').system('true')", "only numbers, + - * / ** and parentheses are allowed, not Call"),
        ("x + 1", "not Name"),
        ("(1).real", "not Attribute"),
        ("1 < 2", "not Compare"),
        ("True + 1", "not Constant"),
        ("'a' * 3", "not Constant"),
        ("1j * 1j", "not Constant"),
        ("7 // 2", "not BinOp"),
        ("[1, 2]", "not List"),
        ("1 +", "not an arithmetic expression: '1 +'"),
        ("1/0", "division by zero"),
        ("9**9**9", "the result has more than 100 digits"),
        ("10**100", "the result has more than 100 digits"),
        ("(10**60) * (10**60)", "the result has more than 100 digits"),
        ("1e60 * 1e60", "the result has more than 100 digits"),
        ("1e999", "the result has more than 100 digits"),
        ("(-8) ** 0.5", "the result is not a real number"),
        ("1+" * 100 + "1", "the expression is longer than 200 characters"),
    ],
)
def test_anything_else_is_refused_with_a_reason(expression, message):
    with pytest.raises(CalculatorError) as error:
        evaluate(expression)
    assert message in str(error.value)


def test_a_huge_power_is_refused_before_it_is_computed():
    started = time.monotonic()
    with pytest.raises(CalculatorError):
        evaluate("99999**99999999")
    assert time.monotonic() - started < 1


def test_results_read_as_numbers():
    assert [format_number(v) for v in (46, 46.0, 3.5, -2.0)] == ["46", "46", "3.5", "-2"]


def test_the_plugin_registers_the_tool_and_its_errors_are_observations():
    tools = registered_tools()
    assert tools["calculator"] is CALCULATOR
    assert CALCULATOR.schema()["function"]["parameters"]["required"] == ["expression"]

    def run(arguments):
        return asyncio.run(run_tool_call(ToolCall("calculator", arguments), tools, timeout=5, concurrency=1))

    assert run({"expression": "(12 + 34) * 2"}) == "92"
    assert run({"expression": "1/0"}) == "Error: tool 'calculator' failed: CalculatorError: division by zero"
    assert run({"expr": "1"}).startswith("Error: tool 'calculator' failed: TypeError:")
