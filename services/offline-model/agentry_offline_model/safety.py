"""Recognises user messages that are really tool output pasted (or injected) as a request.

The stand-in's rules act on cues in the user's text ("remember that ...", "fetch ...").
If that text is a tool's result, acting on it would let whatever the tool read (a web page,
a file) issue instructions. Such messages are answered with a fixed notice instead.
"""

from __future__ import annotations

import json
import re

# Keys that tool results carry and user requests do not.
_RESULT_KEYS = frozenset({"stdout", "stderr", "exit_code", "error", "result", "results", "status", "body", "facts"})
_RESULT_LEADS = re.compile(
    r"^\s*(?:\[?tool(?:[ _](?:result|output))?\]?\s*:|<tool_(?:result|output)>|\w+ returned:|The \w+ tool failed:)",
    re.IGNORECASE,
)


def looks_like_tool_output(text: str) -> bool:
    """A JSON object with result keys, a JSON list of objects, or a "<tool> returned:" line."""
    stripped = text.strip()
    if _RESULT_LEADS.match(stripped):
        return True
    if stripped[:1] not in ("{", "["):
        return False
    try:
        value = json.loads(stripped)
    except ValueError:
        return False
    if isinstance(value, dict):
        return bool(_RESULT_KEYS & value.keys())
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
