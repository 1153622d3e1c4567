"""Intents for long-term memory: remember a fact (with a category), recall facts about X."""

from __future__ import annotations

import re

from agentry_offline_model.intents.base import Intent, tidy

_REMEMBER = re.compile(r"\bremember(?:\s+that\b|\s*:)\s*(.+)", re.IGNORECASE | re.DOTALL)
# "Do you remember that ...?" is a question about memory, not a request to store a fact.
_QUESTION_LEADS = ("do you", "did you", "don't you", "do u")
_RECALL = (
    re.compile(r"\bwhat\s+do\s+you\s+(?:remember|know|recall)\s+about\s+(.+)", re.IGNORECASE),
    re.compile(r"^\W*(?:please\s+|can\s+you\s+|could\s+you\s+)?recall\s+(.+)", re.IGNORECASE),
)

# Checked in this order: the first family with a keyword in the fact names its category.
_CATEGORIES = (
    ("preference", r"prefer\w*|likes?|liked|loves?|loved|hates?|hated|favou?rite\w*|always|never"),
    ("decision", r"decided|decisions?|we\s+will|we'll|let'?s\s+go\s+with|chose|chosen|choose"),
    ("task", r"tasks?|todos?|to-dos?|working\s+on|progress|next\s+step\w*|finished|done"),
)
_CATEGORY_PATTERNS = tuple((name, re.compile(rf"\b(?:{words})\b", re.IGNORECASE)) for name, words in _CATEGORIES)


def remember(text: str) -> Intent | None:
    """ "remember that <fact>" or "remember: <fact>"."""
    for match in _REMEMBER.finditer(text):
        lead = text[: match.start()].lower().replace("\u2019", "'").rstrip(" ,")
        fact = tidy(match.group(1))
        if fact and not lead.endswith(_QUESTION_LEADS):
            arguments = {"fact": fact, "category": categorise(fact)}
            return Intent("remember", arguments, "It asks me to keep a fact, so the remember tool fits. ")
    return None


def recall(text: str) -> Intent | None:
    """ "what do you remember/know about <X>" or "recall <X>"."""
    for pattern in _RECALL:
        match = pattern.search(text)
        if match and (query := tidy(match.group(1))):
            return Intent("recall", {"query": query}, "It asks what I remember, so the recall tool fits. ")
    return None


def categorise(fact: str) -> str:
    """preference, decision or task by keyword (in that order of precedence), else other."""
    normalised = fact.replace("\u2019", "'")
    for name, pattern in _CATEGORY_PATTERNS:
        if pattern.search(normalised):
            return name
    return "other"
