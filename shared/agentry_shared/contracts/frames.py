"""WebSocket frames, client to server and server to client (see docs/protocol.md).

Server frames of a conversation carry `seq`, assigned by the memory service, the one
writer of each conversation's event log. `error` frames answer one socket and are not
part of any conversation's log, so they carry no `seq`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from agentry_shared.contracts.errors import ClientErrorCode, ToolErrorCode, TurnFailureCode

# Every integer a client sends is at most this: exact in a JSON double (JavaScript clients),
# and far inside SQLite's and BSON's int64, so a store never overflows on a client's number.
MAX_CLIENT_INT = 2**53

# ---- client -> server -------------------------------------------------------------


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendMessage(_ClientFrame):
    type: Literal["message"]
    text: str = Field(min_length=1)
    conversation_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
    id: str | None = Field(default=None, max_length=128)


_Id = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")
_OptionalId = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")


class CancelTurn(_ClientFrame):
    """Stop a running or queued turn; it ends with `turn.failed` code `cancelled`."""

    type: Literal["cancel"]
    turn_id: str = _Id
    id: str | None = Field(default=None, max_length=128)


class Resume(_ClientFrame):
    """Replay every frame of the conversation after `after_seq`, then follow it live."""

    type: Literal["resume"]
    conversation_id: str = _Id
    after_seq: int = Field(default=0, ge=0, le=MAX_CLIENT_INT)
    id: str | None = Field(default=None, max_length=128)


_Sha256 = Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")


class Approve(_ClientFrame):
    """The user's answer to `tool.approval_required` for a destructive tool call.

    `turn_id` and `args_sha256` are echoed from that frame: model call ids repeat across
    turns and conversations, so the call is named by its turn, and the decision holds only
    for the arguments the user was shown. `conversation_id`, when sent, must be the turn's."""

    type: Literal["approve"]
    turn_id: str = _Id
    call_id: str = Field(min_length=1, max_length=128)
    args_sha256: str = _Sha256
    approved: bool
    conversation_id: str | None = _OptionalId
    id: str | None = Field(default=None, max_length=128)


class Reauth(_ClientFrame):
    """A fresh token for the same tenant and user, before the socket's token expires
    (then the socket closes with 4401 after an `error` frame `token_expired`)."""

    type: Literal["reauth"]
    token: str = Field(min_length=1, max_length=16384)
    id: str | None = Field(default=None, max_length=128)


class ListConversations(_ClientFrame):
    """The user's conversations, newest activity first: answered by a `conversations` frame."""

    type: Literal["list_conversations"]
    limit: int = Field(default=50, ge=1, le=200)
    id: str | None = Field(default=None, max_length=128)


# What an `approve` without the fields of its `tool.approval_required` frame is told.
APPROVE_ECHO_HINT = "approve must echo turn_id, call_id and args_sha256 from its tool.approval_required frame"


ClientFrame = Annotated[
    SendMessage | CancelTurn | Resume | Approve | Reauth | ListConversations, Field(discriminator="type")
]
CLIENT_FRAME = TypeAdapter(ClientFrame)

# ---- server -> client -------------------------------------------------------------


class _ServerFrame(BaseModel):
    conversation_id: str
    turn_id: str | None = None
    seq: int = 0


class MessageAccepted(_ServerFrame):
    type: Literal["message.accepted"] = "message.accepted"
    id: str | None = None


class TurnStarted(_ServerFrame):
    type: Literal["turn.started"] = "turn.started"


class ThinkingStarted(_ServerFrame):
    type: Literal["thinking.started"] = "thinking.started"
    step: int = 0


class ThinkingFinished(_ServerFrame):
    type: Literal["thinking.finished"] = "thinking.finished"
    step: int = 0
    elapsed_ms: int


def _is_none(value: object) -> bool:
    return value is None


class ToolStarted(_ServerFrame):
    type: Literal["tool.started"] = "tool.started"
    tool: str
    call_id: str


class ToolFinished(_ServerFrame):
    """A tool call ended; a failed or refused one (`ok: false`) says why and when to retry.

    `error` is the tool error code the model was given (only the code: the model's message
    can quote tool output or model text); `retry_after_ms` says when the same call may go,
    only for `rate_limited`, the one refusal that waiting lifts. `ok: true` frames carry
    neither, nor do frames stored before the fields existed. Unset, they are left out of the
    JSON (not written as null): such a frame is byte for byte what it was before them."""

    type: Literal["tool.finished"] = "tool.finished"
    tool: str
    call_id: str
    ok: bool
    elapsed_ms: int = 0
    error: ToolErrorCode | None = Field(default=None, exclude_if=_is_none)
    retry_after_ms: int | None = Field(default=None, ge=1, exclude_if=_is_none)


def arguments_sha256(arguments: dict[str, Any]) -> str:
    """Hex SHA-256 of the arguments' canonical JSON (docs/protocol.md, `tool.approval_required`):
    keys sorted by code point, no whitespace, non-ASCII as UTF-8, not escaped."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode(errors="surrogatepass")).hexdigest()


class ToolApprovalRequired(_ServerFrame):
    """A destructive tool call waits for the user: answer with an `approve` frame (echoing
    `turn_id`, `call_id`, `args_sha256`) before `expires_in_ms`; no answer in time means
    denied. `args_sha256` is `arguments_sha256(arguments)`; frames stored before it existed
    have none (those approvals have long expired)."""

    type: Literal["tool.approval_required"] = "tool.approval_required"
    tool: str
    call_id: str
    arguments: dict[str, Any]
    args_sha256: str | None = None
    expires_in_ms: int


class MessageDelta(_ServerFrame):
    type: Literal["message.delta"] = "message.delta"
    text: str


class MessageReset(_ServerFrame):
    """Discard the `message.delta` text received so far for this turn: the answer restarts
    (another reasoner took the turn over after a crash)."""

    type: Literal["message.reset"] = "message.reset"
    reason: str = "resumed"


class TurnCompleted(_ServerFrame):
    type: Literal["turn.completed"] = "turn.completed"
    text: str


class FrameError(BaseModel):
    """Why a turn failed: `code` is one of `errors.TurnFailureCode`."""

    code: TurnFailureCode
    message: str


class TurnFailed(_ServerFrame):
    type: Literal["turn.failed"] = "turn.failed"
    error: FrameError


ServerFrame = Annotated[
    MessageAccepted
    | TurnStarted
    | ThinkingStarted
    | ThinkingFinished
    | ToolStarted
    | ToolFinished
    | ToolApprovalRequired
    | MessageDelta
    | MessageReset
    | TurnCompleted
    | TurnFailed,
    Field(discriminator="type"),
]
SERVER_FRAME: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)
# Every `type` a server frame can have (for metrics labels and docs).
SERVER_FRAME_TYPES: frozenset[str] = frozenset(
    str(model.model_fields["type"].default)
    for model in (
        MessageAccepted,
        TurnStarted,
        ThinkingStarted,
        ThinkingFinished,
        ToolStarted,
        ToolFinished,
        ToolApprovalRequired,
        MessageDelta,
        MessageReset,
        TurnCompleted,
        TurnFailed,
    )
)

# On the frames exchange a message carries the frames of one log entry, one per line, in
# seq order (NDJSON): one publish and one delivery per entry, not per frame. A frame's
# JSON never holds a raw newline (strings escape it), so a line is always one frame.
FANOUT_SEPARATOR: Final = b"\n"


# At most this many characters of a conversation's first user message make its title.
TITLE_CHARS = 80


class ConversationSummary(BaseModel):
    """One conversation of a user: times are Unix seconds; `title` is the start of its first
    user message (at most TITLE_CHARS characters, "…" ending a cut one; empty before any)."""

    conversation_id: str
    created_at: float
    last_activity_at: float  # the latest of its creation, its newest turn's start and end
    title: str = ""


class ConversationList(BaseModel):
    """The answer to `list_conversations`, to that socket only: not part of any
    conversation's log, so it has no `seq` (like `error`)."""

    type: Literal["conversations"] = "conversations"
    conversations: list[ConversationSummary]
    id: str | None = None


class ErrorFrame(BaseModel):
    """The client sent something wrong; the socket stays open. `retry_after_ms`: a limit
    was hit, and the same frame may succeed after that long."""

    type: Literal["error"] = "error"
    code: ClientErrorCode
    message: str
    conversation_id: str | None = None
    id: str | None = None
    retry_after_ms: int | None = None
