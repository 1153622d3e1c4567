"""The sequencer's decisions, free of broker I/O: store an entry, say what must go out.

The adapter publishes the returned messages in order and only then acks, so a crash at
any point means redelivery; every store write here is idempotent, and a redelivered
entry yields the same frames with the same seqs (gateways drop seqs they have seen).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentry_shared.bus import encode
from agentry_shared.contracts.events import EventPosted, LogEntry
from agentry_shared.contracts.frames import MessageAccepted, ServerFrame
from agentry_shared.contracts.memory import ChatMessage
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.topology import Topology

from agentry_memory.metrics import FRAMES_APPENDED
from agentry_memory.store import Store


@dataclass(frozen=True)
class Outbound:
    """One message to publish (publisher-confirmed) before the entry may be acked."""

    exchange: str
    routing_key: str
    body: bytes
    persistent: bool


class ConversationLog:
    def __init__(self, store: Store, topology: Topology) -> None:
        self.store = store
        self.topology = topology

    async def ingest(self, entry: LogEntry, body: bytes | None = None) -> list[Outbound]:
        """`body` is the entry as received: a turn is forwarded byte for byte when given."""
        if isinstance(entry, EventPosted):
            return [await self._sequence(entry.scope, entry.event_id, entry.frame)]
        return await self._turn(entry, body)

    async def _turn(self, turn: TurnRequested, body: bytes | None) -> list[Outbound]:
        scope = turn.scope
        await self.store.add_turn(scope, turn.turn_id, ChatMessage(role="user", content=turn.text))
        accepted = MessageAccepted(
            conversation_id=scope.conversation_id, turn_id=turn.turn_id, id=turn.client_message_id
        )
        frame = await self._sequence(scope, f"{turn.turn_id}:accepted", accepted)
        forward = Outbound(
            exchange=self.topology.turns_exchange,
            routing_key=str(self.topology.partition(scope.conversation_id)),
            body=body if body is not None else encode(turn),
            persistent=True,
        )
        return [frame, forward]

    async def _sequence(self, scope: Scope, event_id: str, frame: ServerFrame) -> Outbound:
        # The routing key is the scope's conversation: the frame must not claim another one.
        frame = frame.model_copy(update={"conversation_id": scope.conversation_id})
        seq, created = await self.store.append_frame(scope, event_id, frame.model_dump(mode="json"))
        if created:
            FRAMES_APPENDED.inc()
        sequenced = frame.model_copy(update={"seq": seq})
        return Outbound(
            exchange=self.topology.frames_exchange,
            routing_key=scope.conversation_id,
            body=sequenced.model_dump_json().encode(),
            persistent=False,
        )
