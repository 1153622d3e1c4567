"""Checks a tool call must pass before it is dispatched; each failure goes back to the
model as a tool error it can correct, never a crash, and is counted."""

from __future__ import annotations

import json
from typing import Any

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.tools import ToolCompleted, ToolDescriptor, ToolError
from jsonschema import Draft202012Validator

from agentry_reasoner.model import ToolCall

_validators: dict[tuple[str, str], Draft202012Validator] = {}


def argument_errors(tool: ToolDescriptor, arguments: dict[str, Any]) -> str | None:
    """The first schema violations of `arguments`, said so the model can fix its call."""
    key = (tool.name, json.dumps(tool.parameters, sort_keys=True))
    validator = _validators.get(key)
    if validator is None:
        validator = _validators[key] = Draft202012Validator(tool.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return None
    said = []
    for error in errors[:3]:
        where = "/".join(str(p) for p in error.path) or "arguments"
        said.append(f"{where}: {error.message}")
    return "; ".join(said)


def check_call(
    call: ToolCall, by_name: dict[str, ToolDescriptor]
) -> tuple[ToolDescriptor, dict[str, Any]] | ToolCompleted:
    """Mistakes of the model come back to it as tool errors it can correct."""
    tool = by_name.get(call.name)
    if tool is None:
        return tool_error(call, "unknown_tool", f"No tool named {call.name!r}. Available: {sorted(by_name)}")
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError as exc:
        return tool_error(call, "invalid_arguments", f"Arguments are not valid JSON: {exc.msg}")
    except (ValueError, RecursionError):  # an integer of over 4300 digits; nesting past the recursion limit
        return tool_error(call, "invalid_arguments", "Arguments are nested too deeply or hold too long a number.")
    if not isinstance(arguments, dict):
        return tool_error(call, "invalid_arguments", "Arguments must be a JSON object.")
    try:
        json.dumps(arguments, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        message = "Arguments hold a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape): write valid Unicode."
        return tool_error(call, "invalid_arguments", message)
    problem = argument_errors(tool, arguments)
    if problem is not None:
        return tool_error(call, "invalid_arguments", f"Arguments do not match the {tool.name} schema: {problem}")
    return tool, arguments


def checked_message(result: ToolCompleted) -> str:
    return result.error.message if result.error else "invalid call"


def tool_error(call: ToolCall, code: ToolErrorCode, message: str) -> ToolCompleted:
    return ToolCompleted(call_id=call.call_id, tool=call.name, ok=False, error=ToolError(code=code, message=message))


def tool_message(result: ToolCompleted) -> str:
    """What the model reads back: the output, or the error it can act on."""
    if result.ok:
        return result.output
    error = result.error or ToolError(code="failed", message="unknown error")
    return json.dumps({"error": {"code": error.code, "message": error.message}})
