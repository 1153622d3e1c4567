"""Arithmetic for the model, which is bad at it.

The expression is parsed with `ast` and walked over a whitelist of node types; it is
never evaluated by Python. Every step is bounded (exponent, size of integers) so that a
short expression cannot ask for hours of CPU or gigabytes of digits.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from agentry_tool_runner.tools.failure import ToolFailure, in_worker

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 10_000
MAX_DIGITS = 4_000  # below Python's own int-to-str limit (4300)
_INT_LIMIT = 10**MAX_DIGITS
_MAX_BITS = _INT_LIMIT.bit_length()

Number = int | float


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolFailure(f"exponent too large (limit {MAX_EXPONENT})")
    # Estimate before computing: (10**4000) ** 10000 must be refused, not attempted.
    if isinstance(base, int) and isinstance(exponent, int) and (abs(base).bit_length() - 1) * exponent > _MAX_BITS:
        raise ToolFailure(f"result too large (limit {MAX_DIGITS} digits)")
    result = base**exponent
    if isinstance(result, complex):
        raise ToolFailure("result is not a real number")
    return result


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(value: Number, ndigits: Number = 0) -> Number:
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise ToolFailure("round() takes a whole number of digits between -100 and 100")
    return round(value, ndigits) if ndigits else round(value)


def _at_least_two(function: Callable[..., Number]) -> Callable[..., Number]:
    def checked(*args: Number) -> Number:
        if len(args) < 2:
            raise ToolFailure("min() and max() take at least two numbers")
        return function(*args)

    return checked


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": _round,
    "min": _at_least_two(min),
    "max": _at_least_two(max),
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}


def evaluate(expression: str) -> Number:
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolFailure(f"not a valid expression: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
        raise ToolFailure("not a valid expression") from None
    try:
        return _checked(_eval(tree.body))
    except ZeroDivisionError:
        raise ToolFailure("division by zero") from None
    except OverflowError:
        raise ToolFailure("result too large") from None
    except ValueError as exc:  # math domain errors: sqrt(-1), log(0)
        raise ToolFailure(f"invalid operation: {exc}") from None
    except (RecursionError, MemoryError):
        raise ToolFailure("expression too complex") from None
    except TypeError as exc:  # wrong number of arguments to a function
        raise ToolFailure(f"invalid call: {exc}") from None


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return _checked(node.value)
        raise ToolFailure(f"unsupported literal {node.value!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _checked(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolFailure(f"unknown name {node.id!r}")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS or node.keywords:
            raise ToolFailure(f"unsupported function call (allowed: {', '.join(_FUNCTIONS)})")
        return _checked(_FUNCTIONS[name](*(_eval(arg) for arg in node.args)))
    raise ToolFailure(f"unsupported syntax: {type(node).__name__}")


def _checked(value: Number) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolFailure("result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolFailure("result is not finite")
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise ToolFailure(f"result too large (limit {MAX_DIGITS} digits)")
    return value


def format_number(value: Number) -> str:
    """Integers exactly, floats by their shortest round-tripping repr."""
    return str(value) if isinstance(value, int) else repr(value)


def run(expression: str) -> str:
    return format_number(evaluate(expression))


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from pydantic import BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        expression: str = Field(
            min_length=1,
            max_length=MAX_EXPRESSION_CHARS,
            description="Arithmetic expression, e.g. '(3 + 4) * 2 ** 10 / 7' or 'sqrt(2) * pi'.",
        )

    TOOL = Tool(
        name="calculator",
        description=(
            "Evaluates an arithmetic expression exactly and returns the result. Supports + - * / // % **, "
            "parentheses, the constants pi, e, tau and the functions "
            + ", ".join(_FUNCTIONS)
            + ". Use it for any arithmetic instead of computing in your head."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="read_only",
        timeout_seconds=5.0,
        limits=Limits(cpu_seconds=2, memory_mib=256, max_output_bytes=8 * 1024),
        requires_sandbox=False,  # a pure function of its argument: no files, network or code
        backend="worker",  # no sandboxed process per call (execution/in_worker.py)
    )
