"""Intents for the workspace tools: write quoted content to a path, read a file back."""

from __future__ import annotations

import re

from agentry_offline_model.intents.base import Intent, normalise_quotes

_WRITE = re.compile(
    r"\b(?:save|write)\s+\"(.*?)\"\s+(?:to|into|in)\s+(?:the\s+)?(?:file\s+)?[`'\"]?([^\s`'\"]+)",
    re.IGNORECASE | re.DOTALL,
)
_READ = re.compile(
    r"\b(?:read|show\s+me|open)\s+(?:(?:the|file|contents?|of)\s+){0,3}[`'\"]?([\w./~-]+)",
    re.IGNORECASE,
)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]+$")


def write_file(text: str) -> Intent | None:
    """`save "<content>" to <path>` or `write "<content>" to <path>`; the content is verbatim."""
    match = _WRITE.search(normalise_quotes(text))
    if match is None:
        return None
    path = match.group(2).rstrip(".,;:!?")
    if not path:
        return None
    arguments = {"path": path, "content": match.group(1)}
    return Intent("workspace_write", arguments, "It asks to save text to a file, so workspace_write fits. ")


def read_file(text: str) -> Intent | None:
    """ "read/show me/open <path>" when the word after the verb looks like a file name."""
    for match in _READ.finditer(normalise_quotes(text)):
        path = match.group(1).rstrip(".")
        if looks_like_path(path):
            return Intent("workspace_read", {"path": path}, "It asks to see a file, so workspace_read fits. ")
    return None


def looks_like_path(word: str) -> bool:
    """A slash or a file extension, and at least one letter: "notes.txt", "src/app", not "3.5"."""
    has_letter = any(ch.isalpha() for ch in word)
    return has_letter and "://" not in word and ("/" in word or bool(_EXTENSION.search(word)))
