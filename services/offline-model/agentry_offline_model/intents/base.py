"""The shape every intent matcher returns, and the clean-up their captures share."""

from __future__ import annotations

from dataclasses import dataclass

_TRAILING = ".,;:!?"
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


@dataclass(frozen=True)
class Intent:
    """One tool call the user asked for, and the reasoning sentence that explains it."""

    tool: str
    arguments: dict[str, str]
    why: str


def tidy(capture: str) -> str:
    """A captured phrase without surrounding quotes, spaces or closing punctuation."""
    text = " ".join(capture.split())
    previous = None
    while text != previous:
        previous = text
        text = text.strip().rstrip(_TRAILING).strip(_QUOTES)
    return text


def normalise_quotes(text: str) -> str:
    """Typographic quotes as plain ones, so phone keyboards match the same patterns."""
    return text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'").replace("\u2018", "'")
