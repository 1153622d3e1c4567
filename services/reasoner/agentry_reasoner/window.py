"""Shortening the conversation when the model says it does not fit its context window."""

from __future__ import annotations

from agentry_shared.contracts.chat import ChatMessage


def trimmed(history: list[ChatMessage]) -> list[ChatMessage] | None:
    """`history` with the older half of its earlier exchanges left out, or None when there
    is nothing left to leave out. Leading system messages (summary, facts) and the current
    user message stay; the cut falls on a user message, so no tool result loses its call."""
    lead = 0
    while lead < len(history) and history[lead].role == "system":
        lead += 1
    users = [i for i in range(lead, len(history)) if history[i].role == "user"]
    if len(users) < 2:
        return None
    keep_from = users[len(users) // 2]
    return [*history[:lead], *history[keep_from:]]
