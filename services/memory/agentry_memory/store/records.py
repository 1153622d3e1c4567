"""The values stores hand back, and the few rules about them every backend shares."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.facts import FactCategory, TaskStatus
from agentry_shared.contracts.frames import TITLE_CHARS, arguments_sha256
from agentry_shared.contracts.memory import ApprovalState, TurnBudgets, TurnState

FINISHED: frozenset[TurnState] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class StoredMessage:
    """A message with where it sits in its conversation and what it costs in the window."""

    turn_index: int
    position: int
    tokens: int
    message: ChatMessage


@dataclass(frozen=True)
class Summary:
    """The rolling summary of a conversation: turns 1..`through_turn` are in it."""

    text: str
    through_turn: int
    tokens: int
    updated_at: float


@dataclass(frozen=True)
class TurnContext:
    """What a reasoner needs to run or resume a turn, and what the summariser needs to know."""

    window: list[StoredMessage]  # oldest first, ending with this turn's user message
    produced: list[ChatMessage]  # this turn's own messages so far (positions 1..n)
    summary: Summary | None = None  # the conversation's latest rolling summary
    # The newest turn with a message the window left out (0: nothing was left out): turns up
    # to it that the summary does not cover yet are what the summariser catches up on.
    left_out_turn: int = 0

    @property
    def messages(self) -> list[ChatMessage]:
        return [stored.message for stored in self.window]


@dataclass(frozen=True)
class TurnStatus:
    conversation_id: str
    state: TurnState
    attempts: int
    cancel_requested: bool
    finished_by: str | None  # event_id of the frame that ended the turn


@dataclass(frozen=True)
class ToolCall:
    """A claim's answer: `new` (run it), `running` (someone else has it) or `done`."""

    state: Literal["new", "running", "done"]
    claimed_seconds_ago: float = 0.0
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class ApprovalRecord:
    """An approval as a decision finds it; `changed` is True only for the call that decided
    it (that one broadcasts), so a repeated decision changes and announces nothing."""

    conversation_id: str
    turn_id: str
    call_id: str
    state: ApprovalState
    changed: bool = False
    args_sha256: str = ""  # of the arguments asked about; an answer with another is not recorded


@dataclass(frozen=True)
class ApprovalAnswer:
    """The user's answer to one call: named by its turn (model call ids repeat across turns
    and conversations) and by the digest of the arguments the user was shown."""

    tenant_id: str
    user_id: str
    turn_id: str
    call_id: str
    args_sha256: str
    approved: bool
    conversation_id: str | None = None  # when given, the turn must be of this conversation


def kept_digest(stored: str | None, arguments_json: str) -> str:
    """The digest kept with an approval; one asked before digests were kept (None) gets
    it from its stored arguments, which are the same JSON values."""
    return stored or arguments_sha256(json.loads(arguments_json))


@dataclass(frozen=True)
class TokenTaken:
    allowed: bool
    retry_after_seconds: float = 0.0


# Tool-call rate limits count in fixed windows of this length (seconds).
TOKEN_WINDOW_SECONDS = 60.0


def token_window(now: float) -> float:
    """The start of the fixed window `now` falls in: every replica computes the same one."""
    return now - now % TOKEN_WINDOW_SECONDS


# Turn budgets: turns per minute count in the fixed windows of TOKEN_WINDOW_SECONDS, tokens
# in UTC days. An admitted turn counts as running until it finishes, for at most
# ADMISSION_LIFETIME_SECONDS; one the log has not recorded yet (on its way, or never
# published) for ADMISSION_GRACE_SECONDS.
DAY_SECONDS = 86_400.0
ADMISSION_GRACE_SECONDS = 60.0
ADMISSION_LIFETIME_SECONDS = 3_600.0
CONCURRENCY_RETRY_SECONDS = 1.0  # when a turn will end is unknown: try again about then
TENANT = ""  # the user_id of a tenant's own counts

BudgetCode = Literal["rate_limited", "budget_exceeded"]


def day_window(now: float) -> float:
    return now - now % DAY_SECONDS


@dataclass(frozen=True)
class Admission:
    """AdmitTurn's answer: refused with the code, the setting that refused, and when to retry."""

    allowed: bool
    code: BudgetCode | None = None
    limit: str | None = None
    retry_after_seconds: float = 0.0


@dataclass(frozen=True)
class BudgetLevel:
    """The budgets of one payer: the user (`owner` its user_id) or the tenant (`TENANT`)."""

    name: Literal["USER", "TENANT"]
    owner: str
    turns_per_minute: int
    concurrent_turns: int
    tokens_per_day: int


def budget_levels(user_id: str, budgets: TurnBudgets) -> list[BudgetLevel]:
    return [
        BudgetLevel(
            "USER", user_id, budgets.user_turns_per_minute, budgets.user_concurrent_turns, budgets.user_tokens_per_day
        ),
        BudgetLevel(
            "TENANT",
            TENANT,
            budgets.tenant_turns_per_minute,
            budgets.tenant_concurrent_turns,
            budgets.tenant_tokens_per_day,
        ),
    ]


def over_budget(level: BudgetLevel, turns: int, running: int, tokens: int, now: float) -> Admission | None:
    """The refusal of one more turn for a payer that used `turns` this minute, has `running`
    turns and used `tokens` today; None if it may start."""
    if 0 < level.tokens_per_day <= tokens:
        wait = day_window(now) + DAY_SECONDS - now
        return Admission(False, "budget_exceeded", f"BUDGET_{level.name}_TOKENS_PER_DAY", wait)
    if 0 < level.concurrent_turns <= running:
        return Admission(False, "rate_limited", f"BUDGET_{level.name}_CONCURRENT_TURNS", CONCURRENCY_RETRY_SECONDS)
    if 0 < level.turns_per_minute <= turns:
        wait = token_window(now) + TOKEN_WINDOW_SECONDS - now
        return Admission(False, "rate_limited", f"BUDGET_{level.name}_TURNS_PER_MINUTE", wait)
    return None


def final_state(frame: dict[str, Any]) -> TurnState | None:
    """The state a turn ends in when this frame is sequenced; None if it does not end one."""
    error = frame.get("error") or {}
    return _final_state(frame.get("type"), error.get("code"))


def _final_state(frame_type: object, error_code: object) -> TurnState | None:
    if frame_type == "turn.completed":
        return "completed"
    if frame_type == "turn.failed":
        return "cancelled" if error_code == "cancelled" else "failed"
    return None


@dataclass(frozen=True)
class EncodedFrame:
    """A server frame encoded once, before it has a seq: the store keeps `with_seq(seq)`
    and the sequencer publishes the very same bytes (one JSON encoding per frame, not one
    for the store and one for the fan-out).

    `head` and `tail` are the JSON members (`"key":value,...`, no braces) that go before
    and after `seq`; `with_seq` joins them into the frame's JSON object."""

    head: bytes
    tail: bytes
    type: str
    turn_id: str | None
    error_code: str | None = None

    def with_seq(self, seq: int) -> bytes:
        members = b'%s,"seq":%d' % (self.head, seq) if self.head else b'"seq":%d' % seq
        return b"{%s,%s}" % (members, self.tail) if self.tail else b"{%s}" % members

    @property
    def final_state(self) -> TurnState | None:
        return _final_state(self.type, self.error_code)

    @classmethod
    def of(cls, frame: dict[str, Any]) -> EncodedFrame:
        """From a frame as a dict (tests, tools): its keys other than `seq`, then `seq`."""
        body = json.dumps({k: v for k, v in frame.items() if k != "seq"}, ensure_ascii=False, separators=(",", ":"))
        error = frame.get("error") or {}
        return cls(body.encode()[1:-1], b"", str(frame.get("type")), frame.get("turn_id"), error.get("code"))


def replayed(body: str, stored_at: float, now: float) -> dict[str, Any]:
    """A stored frame as a replay hands it on `now`. Two durations in frames count from
    when the frame was made, and a client counts them from when it reads it, so they are
    shortened by the frame's age: a `tool.finished` frame's `retry_after_ms` (left out once
    it has passed: the call may go now), and a `tool.approval_required` frame's
    `expires_in_ms` (0 once passed: the call was denied). Everything else is as stored."""
    frame: dict[str, Any] = json.loads(body)
    kind = frame.get("type")
    if kind == "tool.finished" and isinstance(wait := frame.get("retry_after_ms"), int):
        left = _left(wait, stored_at, now)
        if left >= 1:
            frame["retry_after_ms"] = left
        else:
            del frame["retry_after_ms"]
    elif kind == "tool.approval_required" and isinstance(wait := frame.get("expires_in_ms"), int):
        frame["expires_in_ms"] = max(0, _left(wait, stored_at, now))
    return frame


def _left(wait_ms: int, stored_at: float, now: float) -> int:
    """What is left of a wait of `wait_ms` that began at `stored_at`; a clock that stepped
    back makes no wait longer than the one the frame was made with."""
    return min(wait_ms, math.ceil(wait_ms - (now - stored_at) * 1000))


@dataclass(frozen=True)
class Fact:
    """Something the user told that outlives its conversation (a preference, a decision...)."""

    fact_id: str
    text: str
    category: FactCategory
    conversation_id: str | None  # where it was told (or last confirmed)
    turn_id: str | None
    created_at: float
    confirmed_at: float  # the last time it was told again


@dataclass(frozen=True)
class Task:
    """A piece of work the agent tracks for the user across conversations."""

    task_id: str
    title: str
    status: TaskStatus
    progress: str
    conversation_id: str | None
    turn_id: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ReasoningStep:
    step: int
    text: str
    recorded_at: float


def drop_orphan_tools(messages: list[StoredMessage]) -> list[StoredMessage]:
    """A window must not open on tool results: the model API rejects a result without its call."""
    start = 0
    while start < len(messages) and messages[start].message.role == "tool":
        start += 1
    return messages[start:]


def conversation_title(body: str | None) -> str:
    """A conversation's title from its first user message as stored (JSON of a ChatMessage):
    the text on one line, cut to TITLE_CHARS characters with "…" (empty before any message)."""
    if body is None:
        return ""
    content = ChatMessage.model_validate_json(body).content or ""
    text = " ".join(content.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"
