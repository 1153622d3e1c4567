"""Tolerant readers for OpenAI chat messages and tool lists.

Requests come from arbitrary clients, so every accessor accepts any shape and falls back
to an empty value instead of raising: the rules must never crash on odd input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def role_of(message: object) -> str:
    role = message.get("role") if isinstance(message, Mapping) else None
    return role if isinstance(role, str) else ""


def text_of(message: object) -> str:
    """The message's text, whether `content` is a string or a list of content parts."""
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes)):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
        return "\n".join(pieces)
    return ""


def offered_tool_names(tools: object) -> set[str]:
    """Names of the functions the client offers (OpenAI shape, or a bare {"name": ...})."""
    names: set[str] = set()
    if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
        return names
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        source = function if isinstance(function, Mapping) else tool
        if isinstance(source.get("name"), str):
            names.add(source["name"])
    return names


def requested_calls(message: object) -> dict[str, tuple[str, dict[str, object]]]:
    """An assistant message's tool calls as id -> (name, parsed arguments)."""
    calls: dict[str, tuple[str, dict[str, object]]] = {}
    raw = message.get("tool_calls") if isinstance(message, Mapping) else None
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        return calls
    for call in raw:
        if not isinstance(call, Mapping) or not isinstance(call.get("id"), str):
            continue
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        name = function.get("name")
        calls[call["id"]] = (name if isinstance(name, str) else "", parse_object(function.get("arguments")))
    return calls


def parse_object(raw: object) -> dict[str, object]:
    """A JSON object from a string (or a dict as is); anything else becomes {}."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        if isinstance(value, dict):
            return value
    return {}


def clip(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters, so quotes of long messages stay readable."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
