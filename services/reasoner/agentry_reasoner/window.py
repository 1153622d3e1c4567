"""Shortening the conversation when the model says it does not fit its context window."""

from __future__ import annotations

import re

from agentry_shared.contracts.chat import ChatMessage

TOOL_OUTPUT_FLOOR = 1000  # characters of a tool output that are never cut
_CUT = re.compile(r"\n\[(\d+) characters of this output left out to fit the model's context window\]$")


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


def with_tool_outputs_halved(produced: list[ChatMessage]) -> list[ChatMessage] | None:
    """`produced` (this turn's messages) with each tool output longer than
    `TOOL_OUTPUT_FLOOR` cut to half, its start kept and the cut said at its end; None when
    none is that long. The turn's own outputs can outgrow the window on their own (a
    tool-runner passes up to 64 KiB a call), where leaving out older turns does not help."""
    halved, cut = [], False
    for message in produced:
        content = message.content or ""
        if message.role != "tool" or len(content) <= TOOL_OUTPUT_FLOOR:
            halved.append(message)
            continue
        said = _CUT.search(content)
        left_out = int(said.group(1)) if said else 0
        kept = content[: said.start()] if said else content
        keep = max(TOOL_OUTPUT_FLOOR, len(kept) // 2)
        if keep >= len(kept):
            halved.append(message)
            continue
        left_out += len(kept) - keep
        note = f"\n[{left_out} characters of this output left out to fit the model's context window]"
        halved.append(message.model_copy(update={"content": kept[:keep] + note}))
        cut = True
    return halved if cut else None
