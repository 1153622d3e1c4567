"""Summarisation requests from the memory service: a short, deterministic rolling summary.

Contract (also in the README): the first system message starts with `Summarize the
conversation`; the conversation follows either as ordinary messages or as one user
message whose lines start with `user:` / `assistant:`. A message (or transcript line)
starting with `Summary:` is the previous summary, carried forward so older content
survives each roll until the length cap pushes it out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentry_offline_model.conversation import clip, role_of, text_of

PROMPT_PREFIX = "summarize the conversation"
ITEM_CHARS = 80
NEW_PART_CHARS = 400  # when a previous summary is carried, it keeps the rest of the cap
SUMMARY_CHARS = 600
_SUMMARY = "summary:"
_PREVIOUS = "Previous summary:"
_TRANSCRIPT_LINE = re.compile(r"^\s*(user|human|assistant|ai|system|developer|tool)\s*:\s?(.*)$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def is_summary_request(messages: Sequence[object]) -> bool:
    first_system = next((m for m in messages if role_of(m) == "system"), None)
    return first_system is not None and text_of(first_system).lstrip().lower().startswith(PROMPT_PREFIX)


def summarize(messages: Sequence[object]) -> str:
    """`Summary: <first sentence of each user message>; ...` plus the previous summary."""
    prompt = next(i for i, m in enumerate(messages) if role_of(m) == "system")
    items: list[str] = []
    previous = ""
    for index, message in enumerate(messages):
        if index == prompt:
            continue
        for role, text in _turns(message):
            if text.lower().startswith(_SUMMARY):
                previous = text[len(_SUMMARY) :].strip()
            elif role == "user" and (sentence := _first_sentence(text)):
                items.append(sentence)
    new_part = "; ".join(items) or "(no new user messages)"
    if not previous:
        return clip("Summary: " + new_part, SUMMARY_CHARS)
    older = "; ".join(p.strip() for p in previous.split(_PREVIOUS) if p.strip())
    return clip(f"Summary: {clip(new_part, NEW_PART_CHARS)} {_PREVIOUS} {older}", SUMMARY_CHARS)


def _turns(message: object) -> list[tuple[str, str]]:
    """(role, text) pairs: the message itself, or the turns of a user-message transcript."""
    role, text = role_of(message), text_of(message).strip()
    lines = text.splitlines()
    if role != "user" or not any(_TRANSCRIPT_LINE.match(line) for line in lines):
        return [(role, text)]
    turns: list[tuple[str, str]] = []
    for line in lines:
        match = _TRANSCRIPT_LINE.match(line)
        if match:
            speaker = match.group(1).lower()
            turns.append(("user" if speaker in ("user", "human") else speaker, match.group(2).strip()))
        elif line.strip().lower().startswith(_SUMMARY) or not turns:
            turns.append(("", line.strip()))
        else:
            turns[-1] = (turns[-1][0], f"{turns[-1][1]} {line.strip()}".strip())
    return turns


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    return clip(_SENTENCE_END.split(flat, maxsplit=1)[0], ITEM_CHARS) if flat else ""
