"""Which tool the last user message asks for: ordered matchers from text to one tool call.

The matchers read only the last user message, never tool output or system text, so
nothing a tool returned can steer the next call. A matcher is tried only when the client
offers its tool; the first that matches wins. Explicit commands come before the looser
arithmetic and time cues in `rules.py` because their payloads (code, URLs, file content)
often contain numbers that would otherwise look like arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from agentry_offline_model.intents.base import Intent
from agentry_offline_model.intents.code import fetch_url, run_python, search_docs
from agentry_offline_model.intents.files import read_file, write_file
from agentry_offline_model.intents.memory import categorise, recall, remember

__all__ = ["ORDER", "Intent", "categorise", "match_intent"]

# (tool name, matcher) in priority order; documented as the README's rule table.
ORDER: tuple[tuple[str, Callable[[str], Intent | None]], ...] = (
    ("python", run_python),
    ("workspace_write", write_file),
    ("remember", remember),
    ("recall", recall),
    ("http_fetch", fetch_url),
    ("search_docs", search_docs),
    ("workspace_read", read_file),
)


def match_intent(text: str, offered: Set[str]) -> Intent | None:
    """The first offered tool whose matcher recognises the text, or None."""
    for tool, matcher in ORDER:
        if tool in offered and (intent := matcher(text)) is not None:
            return intent
    return None
