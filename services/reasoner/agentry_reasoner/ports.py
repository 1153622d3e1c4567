"""What the agent loop needs from the world, as interfaces.

The broker-backed implementations live in `broker_ports.py`; tests pass their own
(a scripted model, a list that records frames) so the loop is tested without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import ServerFrame, TurnCompleted
from agentry_shared.contracts.memory import Context
from agentry_shared.contracts.tools import ToolCompleted, ToolDescriptor


class Events(Protocol):
    async def emit(self, frame: ServerFrame, *, hold: bool = False) -> None:
        """Publish one client-visible frame of this turn, in order, confirmed. `hold`: the
        frame may wait a moment for the next (it is followed at once), to share its entry."""

    async def complete(self, frame: TurnCompleted, messages: list[ChatMessage], reasoning: Mapping[int, str]) -> None:
        """The turn's end with its final checkpoint (`messages` as `Memory.append` takes
        them): stored together, so the answer is kept exactly when the end is announced."""


class Memory(Protocol):
    async def context(self) -> Context:
        """The conversation window and what this turn already produced (its checkpoint)."""

    async def append(self, messages: list[ChatMessage], reasoning: Mapping[int, str] | None = None) -> None:
        """Checkpoint: every message the turn has produced so far (overwrites), with the
        reasoning of the steps since the last one (for the audit record), in one request."""

    async def record_reasoning(self, step: int, text: str) -> None:
        """The audit record of a step with no checkpoint to go with (the turn failed)."""


class Tools(Protocol):
    async def catalog(self) -> list[ToolDescriptor]: ...

    async def call(self, tool: ToolDescriptor, call_id: str, arguments: dict[str, Any]) -> ToolCompleted: ...

    async def take_token(self, tool: ToolDescriptor) -> float:
        """Per-user rate limit: 0 when the call may go, else seconds until it may."""


class Approvals(Protocol):
    """The user's say on destructive calls; decisions outlive a reasoner crash."""

    async def decision(self, call_id: str, arguments: dict[str, Any]) -> bool | None:
        """A decision already taken (a resumed turn asks before asking the user again); one
        taken for other arguments under the same call id is `False`, never `True`."""

    async def ask(self, tool: str, call_id: str, arguments: dict[str, Any], timeout_s: float) -> bool:
        """Wait for the user's answer; no answer within `timeout_s` means denied."""
