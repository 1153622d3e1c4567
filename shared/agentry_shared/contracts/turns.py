"""A user's turn: what the gateway publishes and the reasoner works on."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agentry_shared.contracts.scope import Scope


class TurnRequested(BaseModel):
    kind: Literal["turn.requested"] = "turn.requested"
    scope: Scope
    turn_id: str = Field(min_length=1, max_length=128)
    text: str
    client_message_id: str | None = None
    accepted_at: datetime
    traceparent: str | None = None
