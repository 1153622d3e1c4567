"""The conversation itself: one message in the shape of the chat-completions API.

Memory stores these, the reasoner sends them to the model and appends the ones a turn
produces; every other contract that carries messages (`memory.AppendMessages`,
`memory.Context`) uses this type.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

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
