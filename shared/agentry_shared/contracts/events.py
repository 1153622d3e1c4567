"""Events of a turn on their way to the conversation log (memory assigns their seq)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import ServerFrame
from agentry_shared.contracts.memory import StepReasoning
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested


class TurnCheckpoint(BaseModel):
    """What the turn produced (as `AppendMessages` carries it), sent in the log entry that
    ends the turn: memory stores it before it sequences that entry's frames, so the
    answer is stored exactly when `turn.completed` is, with no round trip of its own. A
    memory older than the field ignores it (the answer would not be stored): deploy
    memories that read it before reasoners that send it."""

    messages: list[ChatMessage]
    reasoning: list[StepReasoning] = []


class EventPosted(BaseModel):
    """One client-visible event of a turn. `event_id` makes redelivery harmless."""

    kind: Literal["event.posted"] = "event.posted"
    scope: Scope
    turn_id: str
    event_id: str
    frame: ServerFrame
    traceparent: str | None = None
    checkpoint: TurnCheckpoint | None = None


class PostedEvent(BaseModel):
    """One event of an `EventsPosted`: what an `EventPosted` holds apart from its scope."""

    event_id: str
    frame: ServerFrame


class EventsPosted(BaseModel):
    """Several events of one turn, in order, in one log entry: the frames a reasoner had
    ready while its previous entry was being confirmed. Sequenced in order and stored in
    one commit; otherwise the same as posting each as an `EventPosted`. A memory older
    than this kind dead-letters it: deploy memories before reasoners that send it."""

    kind: Literal["events.posted"] = "events.posted"
    scope: Scope
    turn_id: str
    events: list[PostedEvent] = Field(min_length=1)
    traceparent: str | None = None
    checkpoint: TurnCheckpoint | None = None


# What the conversation log consumes, in order, per partition.
LogEntry = Annotated[TurnRequested | EventPosted | EventsPosted, Field(discriminator="kind")]
LOG_ENTRY: TypeAdapter[LogEntry] = TypeAdapter(LogEntry)
