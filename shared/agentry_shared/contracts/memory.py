"""Requests to the memory service (RPC over the broker) and its replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.scope import Scope

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


class ClaimConversation(BaseModel):
    """Create the conversation for this user, or confirm it is theirs."""

    kind: Literal["memory.claim_conversation"] = "memory.claim_conversation"
    scope: Scope


class GetContext(BaseModel):
    """The messages the model sees for this turn: the conversation up to and with it."""

    kind: Literal["memory.get_context"] = "memory.get_context"
    scope: Scope
    turn_id: str


class AppendMessages(BaseModel):
    """The messages a turn produced after the user's; idempotent per (turn_id, position)."""

    kind: Literal["memory.append_messages"] = "memory.append_messages"
    scope: Scope
    turn_id: str
    messages: list[ChatMessage]


class RecordReasoning(BaseModel):
    """The model's reasoning for one step of a turn: kept for audit, never shown to users."""

    kind: Literal["memory.record_reasoning"] = "memory.record_reasoning"
    scope: Scope
    turn_id: str
    step: int
    text: str


class GetFrames(BaseModel):
    """Frames of a conversation after `after_seq`, for a client that resumes."""

    kind: Literal["memory.get_frames"] = "memory.get_frames"
    scope: Scope
    after_seq: int = 0
    limit: int = Field(default=1000, ge=1, le=10_000)


MemoryRequest = Annotated[
    ClaimConversation | GetContext | AppendMessages | RecordReasoning | GetFrames,
    Field(discriminator="kind"),
]
MEMORY_REQUEST: TypeAdapter[MemoryRequest] = TypeAdapter(MemoryRequest)


class Done(BaseModel):
    kind: Literal["memory.done"] = "memory.done"


class Claimed(BaseModel):
    kind: Literal["memory.claimed"] = "memory.claimed"
    created: bool


class Context(BaseModel):
    kind: Literal["memory.context"] = "memory.context"
    messages: list[ChatMessage]


class Frames(BaseModel):
    kind: Literal["memory.frames"] = "memory.frames"
    frames: list[dict[str, Any]]  # server frames as sent, each with its seq


class MemoryFailure(BaseModel):
    """`forbidden`: not this user's conversation; `not_found`; `invalid`; `internal`."""

    kind: Literal["memory.failure"] = "memory.failure"
    code: str
    message: str


MemoryReply = Annotated[Done | Claimed | Context | Frames | MemoryFailure, Field(discriminator="kind")]
MEMORY_REPLY: TypeAdapter[MemoryReply] = TypeAdapter(MemoryReply)
