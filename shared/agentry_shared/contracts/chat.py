"""The conversation itself: one message in the shape of the chat-completions API.

Memory stores these, the reasoner sends them to the model and appends the ones a turn
produces; every other contract that carries messages (`memory.AppendMessages`,
`memory.Context`) uses this type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

Role = Literal["system", "user", "assistant", "tool"]


class ChatMessage(BaseModel):
    """One message of a conversation, in the shape the chat-completions API uses."""

    role: Role
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


_MESSAGES = TypeAdapter(list[ChatMessage])


def to_openai(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """`ChatMessage.to_openai` of each, in one pass of pydantic's serializer: a third of
    the time of one call per message on a long window (it runs for every model call)."""
    dumped: list[dict[str, Any]] = _MESSAGES.dump_python(list(messages), exclude_none=True)
    return dumped


def from_json(bodies: Sequence[str]) -> list[ChatMessage]:
    """Messages stored as their JSON, validated in one pass (one array) instead of one call
    per message: reading a long window is on every turn's path."""
    return _MESSAGES.validate_json("[" + ",".join(bodies) + "]")
