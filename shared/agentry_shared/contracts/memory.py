"""Requests to the memory service (RPC over the broker) and its replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.errors import MemoryFailureCode
from agentry_shared.contracts.frames import MAX_CLIENT_INT, ConversationSummary
from agentry_shared.contracts.scope import Scope


class ClaimConversation(BaseModel):
    """Confirm the conversation is this user's (`not_found` if there is none, `forbidden` if
    another user's); with `new`, create it first: the gateway has just issued its id.

    Only a new, server-issued id is created, so a client cannot squat an id before its
    owner uses it, nor make conversations (and broker bindings) by naming random ids. A
    creation past MEMORY_MAX_CONVERSATIONS_PER_USER is `limit_reached`. Before `new`
    existed every claim created: deploy gateways that send it before memories that read it.
    """

    kind: Literal["memory.claim_conversation"] = "memory.claim_conversation"
    scope: Scope
    new: bool = False


class AbandonConversation(BaseModel):
    """The gateway created this conversation (`ClaimConversation` with `new`) for a
    `message` it then refused (over a turn budget, `unavailable`): delete it unless a turn
    is in it, so a refused first message leaves no empty conversation behind to count
    toward MEMORY_MAX_CONVERSATIONS_PER_USER. One with a turn (a publish that went through
    after all) is kept; another user's is `forbidden`."""

    kind: Literal["memory.abandon_conversation"] = "memory.abandon_conversation"
    scope: Scope


class GetContext(BaseModel):
    """The messages the model sees for this turn: the conversation up to and with it."""

    kind: Literal["memory.get_context"] = "memory.get_context"
    scope: Scope
    turn_id: str


class StepReasoning(BaseModel):
    """One step's reasoning, for the audit record (never shown to users)."""

    step: int
    text: str


class AppendMessages(BaseModel):
    """Every message the turn has produced so far after the user's (the full list, not an
    increment): stored at positions 1..n, so a retry or a later checkpoint overwrites.

    `reasoning` carries the audit record of the steps since the last checkpoint, so a
    step costs one round trip instead of two (as `RecordReasoning` each). A memory older
    than the field ignores it: deploy memories that read it before reasoners that send it.
    """

    kind: Literal["memory.append_messages"] = "memory.append_messages"
    scope: Scope
    turn_id: str
    messages: list[ChatMessage]
    reasoning: list[StepReasoning] = []


class BeginTurn(BaseModel):
    """A reasoner takes the turn. Counts attempts (attempt > 1: a replica died holding it)
    and says whether it was cancelled while queued or has already finished."""

    kind: Literal["memory.begin_turn"] = "memory.begin_turn"
    scope: Scope
    turn_id: str
    # Also answer the turn's context (`TurnBegun.context`) when it is running: one round
    # trip instead of BeginTurn then GetContext. A memory without the field ignores it
    # and answers no context; the reasoner then asks with GetContext.
    with_context: bool = False


class CancelTurnRequest(BaseModel):
    """A user asks to stop a turn. Memory records it (a queued turn is cancelled when it
    starts) and broadcasts `CancelRequested` on the control exchange."""

    kind: Literal["memory.cancel_turn"] = "memory.cancel_turn"
    tenant_id: str
    user_id: str
    turn_id: str


class ClaimToolCall(BaseModel):
    """A tool-runner is about to run a call: first claim wins; results are kept by
    (turn_id, call_id) so a resumed turn never runs a finished call again."""

    kind: Literal["memory.claim_tool_call"] = "memory.claim_tool_call"
    scope: Scope
    turn_id: str
    call_id: str
    tool: str


class CompleteToolCall(BaseModel):
    kind: Literal["memory.complete_tool_call"] = "memory.complete_tool_call"
    scope: Scope
    turn_id: str
    call_id: str
    result: dict[str, Any]  # a ToolCompleted, as JSON


class RequestApproval(BaseModel):
    """The reasoner asks the user to approve a destructive call; pending until decided or expired."""

    kind: Literal["memory.request_approval"] = "memory.request_approval"
    scope: Scope
    turn_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    expires_at: float  # unix time


class DecideApproval(BaseModel):
    """The user's answer (from the gateway) to the call `call_id` of turn `turn_id` with
    arguments of digest `args_sha256` (`frames.arguments_sha256`). Memory records it and
    broadcasts `ApprovalDecided` on the control exchange.

    `turn_id` and `args_sha256` are required in effect: one without them (from a gateway
    of before they existed) is refused as `invalid`, since a call id alone is ambiguous.
    `conversation_id`, when given, must be the turn's."""

    kind: Literal["memory.decide_approval"] = "memory.decide_approval"
    tenant_id: str
    user_id: str
    call_id: str
    approved: bool
    turn_id: str | None = None
    args_sha256: str | None = None
    conversation_id: str | None = None


class GetApproval(BaseModel):
    kind: Literal["memory.get_approval"] = "memory.get_approval"
    scope: Scope
    turn_id: str
    call_id: str


class TakeToolToken(BaseModel):
    """Per user and tool rate limit, shared by every reasoner replica (fixed one-minute window)."""

    kind: Literal["memory.take_tool_token"] = "memory.take_tool_token"
    scope: Scope
    tool: str
    per_minute: int


class TurnBudgets(BaseModel):
    """The turn budgets (settings `BUDGET_*`), 0 meaning off. Turns per minute count in
    fixed one-minute windows, tokens per day in UTC days; concurrent turns are admitted
    turns that have not finished."""

    user_turns_per_minute: int = Field(default=0, ge=0)
    tenant_turns_per_minute: int = Field(default=0, ge=0)
    user_concurrent_turns: int = Field(default=0, ge=0)
    tenant_concurrent_turns: int = Field(default=0, ge=0)
    user_tokens_per_day: int = Field(default=0, ge=0)
    tenant_tokens_per_day: int = Field(default=0, ge=0)

    @property
    def any(self) -> bool:
        return any(value > 0 for value in self.model_dump().values())

    @property
    def counts_tokens(self) -> bool:
        return self.user_tokens_per_day > 0 or self.tenant_tokens_per_day > 0


class AdmitTurn(BaseModel):
    """The gateway asks, before publishing a turn, whether the user and the tenant are
    within their budgets; admitted, the turn is counted (once per `turn_id`: asking again
    admits it again and counts nothing). Memory keeps the counts, so every replica shares them."""

    kind: Literal["memory.admit_turn"] = "memory.admit_turn"
    scope: Scope
    turn_id: str
    budgets: TurnBudgets


class RecordUsage(BaseModel):
    """The model tokens a turn used (input and output, from the model's `usage`), counted
    against the user's and the tenant's tokens of the day."""

    kind: Literal["memory.record_usage"] = "memory.record_usage"
    scope: Scope
    turn_id: str
    tokens: int = Field(ge=0)


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
    after_seq: int = Field(default=0, ge=0, le=MAX_CLIENT_INT)  # the client's, bounded
    limit: int = Field(default=1000, ge=1, le=10_000)


class ListConversations(BaseModel):
    """A user's conversations, the most recently active first, at most `limit` (for the
    web page's list; `frames.ConversationSummary` says what each holds)."""

    kind: Literal["memory.list_conversations"] = "memory.list_conversations"
    tenant_id: str
    user_id: str
    limit: int = Field(default=50, ge=1, le=200)


MemoryRequest = Annotated[
    ClaimConversation
    | AbandonConversation
    | GetContext
    | AppendMessages
    | RecordReasoning
    | GetFrames
    | BeginTurn
    | CancelTurnRequest
    | ClaimToolCall
    | CompleteToolCall
    | RequestApproval
    | DecideApproval
    | GetApproval
    | TakeToolToken
    | ListConversations
    | AdmitTurn
    | RecordUsage,
    Field(discriminator="kind"),
]
MEMORY_REQUEST: TypeAdapter[MemoryRequest] = TypeAdapter(MemoryRequest)


class Done(BaseModel):
    kind: Literal["memory.done"] = "memory.done"


class Claimed(BaseModel):
    kind: Literal["memory.claimed"] = "memory.claimed"
    created: bool


class Abandoned(BaseModel):
    """Reply to AbandonConversation: `removed` False when the conversation has a turn and was kept."""

    kind: Literal["memory.abandoned"] = "memory.abandoned"
    removed: bool


class Context(BaseModel):
    kind: Literal["memory.context"] = "memory.context"
    messages: list[ChatMessage]  # the window, up to and with this turn's user message
    produced: list[ChatMessage] = []  # what this turn already produced (its checkpoint)


TurnState = Literal["queued", "running", "completed", "failed", "cancelled"]


class TurnBegun(BaseModel):
    kind: Literal["memory.turn_begun"] = "memory.turn_begun"
    attempt: int
    state: TurnState  # "running" unless it was cancelled or had already finished
    context: Context | None = None  # asked for with `BeginTurn.with_context`, for a running turn


class TurnCancelAccepted(BaseModel):
    kind: Literal["memory.turn_cancel_accepted"] = "memory.turn_cancel_accepted"
    conversation_id: str
    state: TurnState  # the state before the cancel: finished turns are left as they are


class ToolCallClaimed(BaseModel):
    """`new`: run it. `running`: claimed `claimed_seconds_ago` by a runner that has not
    finished (still running, or died). `done`: `result` is the kept ToolCompleted."""

    kind: Literal["memory.tool_call_claimed"] = "memory.tool_call_claimed"
    state: Literal["new", "running", "done"]
    claimed_seconds_ago: float = 0.0
    result: dict[str, Any] | None = None


class Frames(BaseModel):
    kind: Literal["memory.frames"] = "memory.frames"
    frames: list[dict[str, Any]]  # server frames as sent, each with its seq


ApprovalState = Literal["pending", "approved", "denied", "expired"]


class Approval(BaseModel):
    """Reply to DecideApproval and GetApproval. A decision after `expires_at` is `expired`.

    `args_sha256` is the digest of the arguments the approval is for (None: never asked).
    A DecideApproval whose digest differs is not recorded: the reply shows the approval
    as it stands, with the digest that did not match."""

    kind: Literal["memory.approval"] = "memory.approval"
    conversation_id: str
    turn_id: str
    call_id: str
    state: ApprovalState
    args_sha256: str | None = None


class ToolToken(BaseModel):
    kind: Literal["memory.tool_token"] = "memory.tool_token"
    allowed: bool
    retry_after_seconds: float = 0.0


class Conversations(BaseModel):
    kind: Literal["memory.conversations"] = "memory.conversations"
    conversations: list[ConversationSummary]


class TurnAdmission(BaseModel):
    """Reply to AdmitTurn. Refused: `code` is `rate_limited` (turns per minute, concurrent
    turns) or `budget_exceeded` (tokens per day), `limit` the setting that refused it, and
    `retry_after_seconds` when the same turn may be admitted."""

    kind: Literal["memory.turn_admission"] = "memory.turn_admission"
    allowed: bool
    code: Literal["rate_limited", "budget_exceeded"] | None = None
    limit: str | None = None
    retry_after_seconds: float = 0.0


class MemoryFailure(BaseModel):
    """The request failed; `code` says why (see `errors.MEMORY_FAILURE_MEANINGS`)."""

    kind: Literal["memory.failure"] = "memory.failure"
    code: MemoryFailureCode
    message: str


MemoryReply = Annotated[
    Done
    | Claimed
    | Abandoned
    | Context
    | Frames
    | TurnBegun
    | TurnCancelAccepted
    | ToolCallClaimed
    | Approval
    | ToolToken
    | Conversations
    | TurnAdmission
    | MemoryFailure,
    Field(discriminator="kind"),
]
MEMORY_REPLY: TypeAdapter[MemoryReply] = TypeAdapter(MemoryReply)
