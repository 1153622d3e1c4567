"""Checks a tool call must pass before it is dispatched; each failure goes back to the
model as a tool error it can correct, never a crash, and is counted."""

from __future__ import annotations

import json
from typing import Any

from agentry_shared.contracts.tools import ToolDescriptor
from jsonschema import Draft202012Validator

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
