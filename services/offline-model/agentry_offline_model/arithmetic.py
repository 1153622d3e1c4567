"""Finds arithmetic expressions in free text, the cue for calling the calculator tool.

A loose regex proposes runs of digits, operators and parentheses; Python's parser then
confirms each one is a real expression (parsed only, never evaluated).
"""

from __future__ import annotations

import ast
import re

_CANDIDATE = re.compile(r"(?:(?<![\w.)])-)?[\d(][\d\s.+\-*/%()]*[\d)]")
_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.UAdd, ast.USub,
)  # fmt: skip
_MAX_CHARS = 200


def find_expressions(text: str, limit: int = 4) -> list[str]:
    """Distinct expressions in order of appearance, whitespace normalised, at most `limit`."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        expression = _balance(" ".join(match.group().split()))
        if expression not in found and _is_arithmetic(expression):
            found.append(expression)
            if len(found) >= limit:
                break
    return found


def _balance(expression: str) -> str:
    """Drops parentheses that belong to the prose around the expression, e.g. "(is 2+3)"."""
    while True:
        if expression.startswith("(") and expression.count("(") > expression.count(")"):
            expression = expression[1:].strip()
        elif expression.endswith(")") and expression.count(")") > expression.count("("):
            expression = expression[:-1].strip()
        else:
            return expression


def _is_arithmetic(expression: str) -> bool:
    if not expression or len(expression) > _MAX_CHARS:
        return False
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    nodes = list(ast.walk(tree))
    numbers_only = all(
        isinstance(node, _ALLOWED) and not (isinstance(node, ast.Constant) and type(node.value) not in (int, float))
        for node in nodes
    )
    return numbers_only and any(isinstance(node, ast.BinOp) for node in nodes)
