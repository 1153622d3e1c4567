"""The sequencer's decisions, free of broker I/O: store an entry, say what must go out.

The adapter publishes the returned messages in order and only then acks, so a crash at
any point means redelivery; every store write here is idempotent, and a redelivered
entry yields the same frames with the same seqs (gateways drop seqs they have seen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

from agentry_shared.bus import encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.errors import TurnFailureCode
from agentry_shared.contracts.events import EventPosted, EventsPosted, LogEntry, TurnCheckpoint
from agentry_shared.contracts.frames import FANOUT_SEPARATOR, FrameError, MessageAccepted, ServerFrame, TurnFailed
from agentry_shared.contracts.memory import Context, TurnBegun
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.topology import Topology

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.metrics import FRAMES_APPENDED
from agentry_memory.store import FINISHED, EncodedFrame, Store
from agentry_memory.store.errors import Erased, NotFound, StoreRefusal

log = logging.getLogger(__name__)

POISON_CODE: Final[TurnFailureCode] = "poison"
POISON_MESSAGE = "The turn could not be processed after repeated attempts; it was dropped. Please send it again."


@dataclass(frozen=True)
class Outbound:
    """One message to publish (publisher-confirmed) before the entry may be acked."""

    exchange: str
    routing_key: str
    body: bytes
    persistent: bool


class ConversationLog:
    def __init__(self, store: Store, topology: Topology, assembler: ContextAssembler | None = None) -> None:
        self.store = store
        self.topology = topology
        # With it, a turn that can start at once is forwarded begun, with its context.
        self.assembler = assembler

    async def ingest(self, entry: LogEntry, body: bytes | None = None) -> list[Outbound]:
        """`body` is the entry as received: a turn is forwarded byte for byte when given."""
        if isinstance(entry, EventPosted):
            await self._checkpoint(entry.scope, entry.turn_id, entry.checkpoint)
            return [await self._sequence(entry.scope, entry.turn_id, entry.event_id, entry.frame)]
        if isinstance(entry, EventsPosted):
            await self._checkpoint(entry.scope, entry.turn_id, entry.checkpoint)
            return await self._sequence_all(entry.scope, entry.turn_id, [(e.event_id, e.frame) for e in entry.events])
        return await self._turn(entry, body)

    async def _checkpoint(self, scope: Scope, turn_id: str, checkpoint: TurnCheckpoint | None) -> None:
        """The final checkpoint that came with a turn's end, stored before the end is
        sequenced (a crash between the two redelivers the entry; both writes are
        idempotent). Not over a turn that has already ended: a second attempt that raced
        the first one's end must not replace the answer its client was shown."""
        if checkpoint is None:
            return
        try:
            if (await self.store.turn_status(scope, turn_id)).state in FINISHED:
                log.info("final checkpoint of a turn that had already ended; not stored")
                return
        except NotFound:
            log.warning("final checkpoint of an unknown turn; not stored")
            return
        await asyncio.gather(
            self.store.append_messages(scope, turn_id, checkpoint.messages),
            *(self.store.record_reasoning(scope, turn_id, r.step, r.text) for r in checkpoint.reasoning),
        )

    async def _turn(self, turn: TurnRequested, body: bytes | None) -> list[Outbound]:
        """Store the turn, sequence its `message.accepted`, forward it to the reasoners.

        When the turn is new and every earlier turn of its conversation has ended, it is
        begun here (attempt 1) and forwarded with its context (`TurnRequested.begun`): the
        reasoner that takes it skips the `BeginTurn` round trip. Otherwise it goes as it
        came (without any `begun` a sender put in) and its reasoner asks memory."""
        message = ChatMessage(role="user", content=turn.text)
        if turn.begun is not None or turn.begun_at is not None:
            turn, body = turn.model_copy(update={"begun": None, "begun_at": None}), None
        scope, assembler = turn.scope, self.assembler
        accepted = self._accepted_frame(turn)
        # The turn, its begin and its `message.accepted` in one store write (one commit).
        try:
            begun, stored = await self.store.enter_turn(
                scope, turn.turn_id, message, accepted, begin=assembler is not None, accepted_at=_unix(turn)
            )
        except Erased:
            # Accepted before its user was erased: storing it would bring the user back.
            log.warning("turn of a user erased since it was accepted; dropped")
            return []
        fanned = self._fanout(scope, [accepted], [stored])
        if not begun or assembler is None:
            return [fanned, self._forward(turn, body)]
        context = await assembler.assemble(scope, turn.turn_id, turn.text)
        begun_turn = TurnBegun(
            attempt=1, state="running", context=Context(messages=context.messages, produced=context.produced)
        )
        forwarded = turn.model_copy(update={"begun": begun_turn, "begun_at": time.time()})
        return [fanned, self._forward(forwarded, None)]

    def _forward(self, turn: TurnRequested, body: bytes | None) -> Outbound:
        """`body`: the turn as received, forwarded byte for byte. Else without its None
        fields: a context's messages each have three (a third of the bytes), which the
        quorum queue, the broker and the reasoner's parse would all carry for nothing."""
        return Outbound(
            exchange=self.topology.turns_exchange,
            routing_key=str(self.topology.partition(turn.scope.conversation_id)),
            body=body if body is not None else encode(turn, exclude_none=True),
            persistent=True,
        )

    async def fail_dead_turn(self, turn: TurnRequested) -> list[Outbound]:
        """A turn the broker gave up on (dead-lettered from the log or the turns queues):
        make sure its user hears it ended, with `turn.failed` code `poison`.

        The turn is added first if it never was (it died before ingest), so the user sees
        its `message.accepted` before the failure. A turn that already ended (by a frame
        other than ours) is left alone. Idempotent: a redelivery yields the same frames.
        Raises `StoreRefusal` for a turn of someone else's conversation (nothing to tell),
        `Erased` for one accepted before its user was erased.
        """
        scope = turn.scope
        try:
            await self.store.add_turn(
                scope, turn.turn_id, ChatMessage(role="user", content=turn.text), accepted_at=_unix(turn)
            )
        except StoreRefusal:
            raise
        except Exception:
            # Maybe what killed it; the failure frame alone still reaches the user.
            log.exception("could not store a dead-lettered turn; failing it without it")
        failed = await self._poisoned(scope, turn.turn_id)
        if failed is None:
            return []
        return [await self._accepted(turn), await self._sequence(scope, turn.turn_id, f"{turn.turn_id}:dead", failed)]

    async def fail_dead_end(self, scope: Scope, turn_id: str) -> list[Outbound]:
        """A turn's end the broker gave up on (the reasoner's log entry that carries it was
        dead-lettered): the reasoner acked the turn once that entry was confirmed, so nobody
        else will end it. End it for its user with `turn.failed` code `poison`, unless it
        has ended (the entry was sequenced after all). Idempotent, as `fail_dead_turn`."""
        failed = await self._poisoned(scope, turn_id)
        if failed is None:
            return []
        return [await self._sequence(scope, turn_id, f"{turn_id}:dead", failed)]

    async def erased(self, entry: LogEntry) -> bool:
        """Whether the entry is of a user erased since: a turn accepted before the erasure,
        or an event of a turn the erasure took (it is no longer stored)."""
        erased_at = await self.store.erased_at(entry.scope.tenant_id, entry.scope.user_id)
        if erased_at is None:
            return False
        if isinstance(entry, TurnRequested):
            return _unix(entry) <= erased_at
        try:
            await self.store.turn_status(entry.scope, entry.turn_id)
        except StoreRefusal:
            return True
        return False

    async def _poisoned(self, scope: Scope, turn_id: str) -> TurnFailed | None:
        """The `turn.failed` (code `poison`) that ends a dead turn; None if another frame ended it."""
        try:
            status = await self.store.turn_status(scope, turn_id)
        except NotFound:
            pass
        else:
            if status.state in FINISHED and status.finished_by != f"{turn_id}:dead":
                log.info("dead-lettered turn had already ended", extra={"state": status.state})
                return None
        return TurnFailed(
            conversation_id=scope.conversation_id,
            turn_id=turn_id,
            error=FrameError(code=POISON_CODE, message=POISON_MESSAGE),
        )

    async def _accepted(self, turn: TurnRequested) -> Outbound:
        accepted = self._accepted_frame(turn)
        return self._fanout(turn.scope, [accepted], await self.store.append_frames(turn.scope, [accepted]))

    @staticmethod
    def _accepted_frame(turn: TurnRequested) -> tuple[str, EncodedFrame]:
        accepted = MessageAccepted(
            conversation_id=turn.scope.conversation_id, turn_id=turn.turn_id, id=turn.client_message_id
        )
        return f"{turn.turn_id}:accepted", encode_frame(accepted, turn.scope.conversation_id, turn.turn_id)

    async def _sequence(self, scope: Scope, turn_id: str, event_id: str, frame: ServerFrame) -> Outbound:
        [out] = await self._sequence_all(scope, turn_id, [(event_id, frame)])
        return out

    async def _sequence_all(self, scope: Scope, turn_id: str, events: list[tuple[str, ServerFrame]]) -> list[Outbound]:
        """Give each event the next seq (its first one if seen before), in order, in one
        commit, and fan them out as one message."""
        encoded = [(key, encode_frame(frame, scope.conversation_id, frame.turn_id or turn_id)) for key, frame in events]
        return [self._fanout(scope, encoded, await self.store.append_frames(scope, list(encoded)))]

    def _fanout(
        self, scope: Scope, encoded: list[tuple[str, EncodedFrame]], stored: list[tuple[int, bool]]
    ) -> Outbound:
        """ONE message for the frames of an entry: one per line, in seq order (a frame's
        JSON never holds a raw newline). One publish and one delivery per log entry
        instead of one per frame: the gateways split the lines."""
        lines = []
        for (_, frame), (seq, created) in zip(encoded, stored, strict=True):
            if created:
                FRAMES_APPENDED.inc()
            lines.append(frame.with_seq(seq))  # the bytes the store kept
        return Outbound(
            exchange=self.topology.frames_exchange,
            routing_key=scope.conversation_id,
            body=FANOUT_SEPARATOR.join(lines),
            persistent=False,
        )


def _unix(turn: TurnRequested) -> float:
    """When the gateway accepted the turn (its clock), as the store compares it to an erasure."""
    return turn.accepted_at.timestamp()


_HEAD: Final = {"conversation_id", "turn_id"}
_NOT_TAIL: Final = {"conversation_id", "turn_id", "seq"}


def encode_frame(frame: ServerFrame, conversation_id: str, turn_id: str | None) -> EncodedFrame:
    """The frame's JSON, once, with the scope's conversation (the routing key is the
    scope's: a frame must not claim another conversation) and the entry's turn_id if it
    has none (so the store can tell which turn ends); the store gives it its seq.
    `EncodedFrame.with_seq(seq)` equals the frame's own `model_dump_json()` with that seq."""
    if frame.conversation_id != conversation_id or frame.turn_id != turn_id:
        frame = frame.model_copy(update={"conversation_id": conversation_id, "turn_id": turn_id})
    error = frame.error.code if isinstance(frame, TurnFailed) else None
    return EncodedFrame(
        head=frame.__pydantic_serializer__.to_json(frame, include=_HEAD)[1:-1],
        tail=frame.__pydantic_serializer__.to_json(frame, exclude=_NOT_TAIL)[1:-1],
        type=frame.type,
        turn_id=turn_id,
        error_code=error,
    )
