"""What every storage backend promises, independent of how it stores.

Every method takes the caller's `Scope` and answers only for the conversation that scope
owns: `Forbidden` if another tenant or user owns it, `NotFound` if it (or the turn) does
not exist. Every write is idempotent, because the broker delivers at least once.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentry_shared.contracts.memory import ChatMessage
from agentry_shared.contracts.scope import Scope


class Store(Protocol):
    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect or create; safe to call on a store that already holds data."""

    async def close(self) -> None: ...

    async def claim_conversation(self, scope: Scope) -> bool:
        """True if this call created the conversation for scope's tenant and user."""

    async def add_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> int:
        """Record a turn and its user message (position 0); returns its turn_index (1, 2, ...).

        Creates the conversation if the log brings a turn for an unclaimed one; a turn_id
        seen before returns its first index and changes nothing.
        """

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        """Store the turn's messages after the user's at positions 1..n, replacing what is there."""

    async def context(self, scope: Scope, turn_id: str, limit: int) -> list[ChatMessage]:
        """The last `limit` messages of the turns up to and with this one, oldest first.

        Ordered by turn, then position, whatever order they were stored in; never starts
        with a tool result whose assistant call was cut off.
        """

    async def append_frame(self, scope: Scope, event_id: str, frame: dict[str, Any]) -> tuple[int, bool]:
        """Give the frame the conversation's next seq and keep it (with `seq` set).

        Returns (seq, True); for an event_id seen before, (its first seq, False) and nothing
        is stored. Seqs of a conversation are 1, 2, 3, ... without gaps.
        """

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored frames with seq > after_seq, ascending, at most `limit`."""

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
