"""Reading a turn's checkpoint: what a resumed attempt still has to do, and what an
earlier turn that ended midway left without results."""

from __future__ import annotations

import json

from agentry_shared.contracts.chat import ChatMessage

from agentry_reasoner.model import ToolCall


def final_answer(produced: list[ChatMessage]) -> str | None:
    """A checkpoint that ends in an assistant message without tool calls is finished."""
    if produced and produced[-1].role == "assistant" and not produced[-1].tool_calls:
        return produced[-1].content or ""
    return None


def unanswered_calls(produced: list[ChatMessage]) -> list[ToolCall]:
    """Calls of the last step whose results were not checkpointed (the turn was interrupted)."""
    last = next((i for i in range(len(produced) - 1, -1, -1) if produced[i].role == "assistant"), None)
    if last is None or not produced[last].tool_calls:
        return []
    answered = {m.tool_call_id for m in produced[last + 1 :] if m.role == "tool"}
    return [
        ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
        for c in produced[last].tool_calls or []
        if c["id"] not in answered
    ]


# What the model reads for a call of an earlier turn that ended before its result came.
UNFINISHED_CALL = json.dumps(
    {
        "error": {
            "code": "interrupted",
            "message": "The turn ended (cancelled or failed) before this call returned a result; "
            "it may or may not have taken effect.",
        }
    }
)


def with_results_for_unfinished_calls(history: list[ChatMessage]) -> list[ChatMessage]:
    """`history` with a result for every call that has none: a turn cancelled or failed
    while its tools ran keeps their calls without results, and model APIs refuse an
    assistant message whose calls are not each followed by a tool message."""
    repaired: list[ChatMessage] = []
    i = 0
    while i < len(history):
        message = history[i]
        repaired.append(message)
        i += 1
        if message.role != "assistant" or not message.tool_calls:
            continue
        answered: set[str | None] = set()
        while i < len(history) and history[i].role == "tool":
            answered.add(history[i].tool_call_id)
            repaired.append(history[i])
            i += 1
        repaired += [
            ChatMessage(role="tool", tool_call_id=call["id"], content=UNFINISHED_CALL)
            for call in message.tool_calls
            if call.get("id") not in answered
        ]
    return repaired if len(repaired) != len(history) else history
