"""What every storage backend promises, independent of how it stores.

Every method takes the caller's `Scope` and answers only for the conversation that scope
owns: `Forbidden` if another tenant or user owns it, `NotFound` if it (or the turn) does
not exist. Every write is idempotent, because the broker delivers at least once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentry_shared.contracts.memory import ChatMessage, TurnState
from agentry_shared.contracts.scope import Scope

FINISHED: frozenset[TurnState] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class TurnContext:
    """What a reasoner needs to run or resume a turn."""

    messages: list[ChatMessage]  # the window, ending with this turn's user message
    produced: list[ChatMessage]  # this turn's own messages so far (positions 1..n)


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


def final_state(frame: dict[str, Any]) -> TurnState | None:
    """The state a turn ends in when this frame is sequenced; None if it does not end one."""
    if frame.get("type") == "turn.completed":
        return "completed"
    if frame.get("type") == "turn.failed":
        error = frame.get("error") or {}
        return "cancelled" if error.get("code") == "cancelled" else "failed"
    return None


class Store(Protocol):
    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect or create; safe to call on a store that already holds data."""

    async def close(self) -> None: ...

    async def claim_conversation(self, scope: Scope) -> bool:
        """True if this call created the conversation for scope's tenant and user."""

    async def add_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> int:
        """Record a turn (state `queued`) and its user message (position 0); returns its
        turn_index (1, 2, ...).

        Creates the conversation if the log brings a turn for an unclaimed one; a turn_id
        seen before returns its first index and changes nothing.
        """

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        """Make the turn's messages after the user's exactly `messages` (positions 1..n):
        the list is the turn's full checkpoint, so positions beyond n are dropped."""

    async def context(self, scope: Scope, turn_id: str, limit: int) -> TurnContext:
        """`messages`: the last `limit` messages of the earlier turns plus this turn's user
        message, oldest first, ordered by turn then position whatever order they were stored
        in, never starting with a tool result whose call was cut off. `produced`: this
        turn's positions 1..n, all of them."""

    async def begin_turn(self, scope: Scope, turn_id: str) -> tuple[int, TurnState]:
        """Count an attempt (1 on the first call) and say how the reasoner must go on:
        a finished turn keeps and returns its final state; a turn with a cancel request
        returns `cancelled` (its state changes only when its turn.failed is sequenced);
        otherwise it becomes and returns `running`."""

    async def turn_status(self, scope: Scope, turn_id: str) -> TurnStatus: ...

    async def cancel_turn(self, tenant_id: str, user_id: str, turn_id: str) -> TurnStatus:
        """Record a cancel request for an unfinished turn, found by turn_id alone; returns
        the status from before the request. `Forbidden` if another tenant or user owns it."""

    async def claim_tool_call(self, scope: Scope, turn_id: str, call_id: str, tool: str) -> ToolCall:
        """The first claim of (turn, call_id) records it as running and answers `new`;
        later claims answer `running` (with the first claim's age) or `done` (with the result)."""

    async def complete_tool_call(self, scope: Scope, turn_id: str, call_id: str, result: dict[str, Any]) -> None:
        """Keep the call's result; a second completion keeps the first result."""

    async def append_frame(self, scope: Scope, event_id: str, frame: dict[str, Any]) -> tuple[int, bool]:
        """Give the frame the conversation's next seq and keep it (with `seq` set).

        Returns (seq, True); for an event_id seen before, (its first seq, False) and nothing
        is stored. Seqs of a conversation are 1, 2, 3, ... without gaps, and never reused,
        even after old frames expired. A `turn.completed` / `turn.failed` frame for a turn
        of this conversation that has not finished yet finishes it (`final_state`), in the
        same transaction; a frame naming an unknown turn is kept and finishes nothing.
        """

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored frames with seq > after_seq, ascending, at most `limit`, without gaps."""

    async def sweep_frames(self, older_than: float) -> int:
        """Delete frames stored before `older_than` (Unix time); returns how many.

        Deletes only a prefix of each conversation's frames (everything up to its newest
        expired frame), so what is kept never has a gap, whatever the clock did; and never
        a conversation's last frame, so `frames_after` an older seq is never empty: the
        first frame it returns shows the gap.
        """

    async def record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        """Keep a step's reasoning for audit (replacing an earlier record of the same step)."""

    async def reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        """A turn's reasoning by step: for audits only, never for a user-facing reply."""


def drop_orphan_tools(messages: list[ChatMessage]) -> list[ChatMessage]:
    """A window must not open on tool results: the model API rejects a result without its call."""
    start = 0
    while start < len(messages) and messages[start].role == "tool":
        start += 1
    return messages[start:]
