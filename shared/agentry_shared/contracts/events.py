"""Events of a turn on their way to the conversation log (memory assigns their seq)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.frames import ServerFrame
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested


class EventPosted(BaseModel):
    """One client-visible event of a turn. `event_id` makes redelivery harmless."""

    kind: Literal["event.posted"] = "event.posted"
    scope: Scope
    turn_id: str
    event_id: str
    frame: ServerFrame
    traceparent: str | None = None


# What the conversation log consumes, in order, per partition.
LogEntry = Annotated[TurnRequested | EventPosted, Field(discriminator="kind")]
LOG_ENTRY: TypeAdapter[LogEntry] = TypeAdapter(LogEntry)
