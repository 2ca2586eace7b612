"""Arithmetic on expressions the model writes: numbers, ``+ - * / **`` and parentheses, by walking Python's syntax tree.

The model's text is parsed (``ast.parse``), never executed: a number literal and those operators are all the walker
accepts, so a name, a call or an attribute is an error message, not code. Limits keep one call cheap whatever the
model writes: the expression's length, and the size of every intermediate result (``9**9**9`` is refused before it
is computed).
"""

import ast
import math
import operator
from collections.abc import Callable

from slime.rollout.tools import Tool

MAX_EXPRESSION_CHARS = 200
MAX_DIGITS = 100  # no result, intermediate ones included, beyond 10**100

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


class CalculatorError(ValueError):
    """The expression is not one the calculator evaluates; the message says why (and goes back to the model)."""


def evaluate(expression: str) -> int | float:
    """The value of ``expression``; ``CalculatorError`` when it is not plain arithmetic or exceeds a limit."""
    if not isinstance(expression, str):
        raise CalculatorError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from None
    return _value(tree.body)


def format_number(value: int | float) -> str:
    """``5`` for 5 and 5.0 alike, ``3.5`` for 3.5."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


async def calculate(expression: str) -> str:
    """The tool: the result as text (async, so it runs on the rollout's event loop: it takes microseconds)."""
    return format_number(evaluate(expression))


CALCULATOR = Tool(
    name="calculator",
    description="Evaluate an arithmetic expression: numbers, + - * / ** and parentheses.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "for example (12 + 34) * 2"}},
        "required": ["expression"],
    },
    function=calculate,
)


def _value(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, complex or str
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _value(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _checked(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError(f"the result has more than {MAX_DIGITS} digits") from None
    raise CalculatorError(f"only numbers, + - * / ** and parentheses are allowed, not {type(node).__name__}")


def _check_power(base: float, exponent: float) -> None:
    """Refuse a power whose result would be too large before computing it (a big int power can take minutes)."""
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")


def _checked(value: object) -> int | float:
    if isinstance(value, complex):  # e.g. (-8) ** 0.5
        raise CalculatorError("the result is not a real number")
    if abs(value) >= 10**MAX_DIGITS:  # infinities too
        raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    return value
