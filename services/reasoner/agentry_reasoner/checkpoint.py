"""Reading a turn's checkpoint: what a resumed attempt still has to do."""

from __future__ import annotations

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
