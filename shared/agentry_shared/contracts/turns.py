"""A user's turn: what the gateway publishes and the reasoner works on."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agentry_shared.contracts.memory import TurnBegun
from agentry_shared.contracts.scope import Scope


class TurnRequested(BaseModel):
    kind: Literal["turn.requested"] = "turn.requested"
    scope: Scope
    turn_id: str = Field(min_length=1, max_length=128)
    text: str
    client_message_id: str | None = None
    accepted_at: datetime
    traceparent: str | None = None
    # Set by memory only, on the turn it forwards to the reasoners, when it began the turn
    # as it stored it (attempt 1, `running`, with its context): the reasoner that takes
    # this first delivery skips `BeginTurn`. `begun_at` (Unix time, memory's clock) lets
    # it tell whether it was listening for cancels since; if not, or on a redelivery, it
    # asks memory. Memory ignores both fields in what it receives.
    begun: TurnBegun | None = None
    begun_at: float | None = None
