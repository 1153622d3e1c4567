"""Frames from the broker to the local sockets of each conversation.

The process has ONE queue, bound to the frames exchange once per conversation that has at
least one local socket, rather than a queue per socket: the broker then sends each frame
to a gateway once however many of its sockets watch the conversation, and a socket
joining or leaving costs no queue declaration. Bindings follow the local subscriber sets
(bind on the first, unbind after the last).

The queue is exclusive and auto-delete, so it disappears with the process. It is named by
us (`<namespace>.gateway.<hex>`), not by the server: aio-pika's robust channel re-declares
queues by name after a reconnect, and a server-assigned `amq.gen-*` name could not be
re-declared (aio-pika would invent an `amq_<hex>` name anyway); ours also tells an operator
whose queue it is.

After a broker connection loss the queue is gone (exclusive), with what was published
meanwhile. The robust channel re-declares it on reconnect with the bindings made through
it (`RobustQueue.bind` records them, `unbind` forgets them) and restarts the consumer;
the sockets then catch up from memory (see `resync`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from agentry_shared.bus import Bus
from agentry_shared.contracts.frames import FANOUT_SEPARATOR
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from agentry_gateway import broker
from agentry_gateway.turn_clock import TURN_CLOCK

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    def deliver(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> None:
        """Take one frame without waiting (called from the shared consumer)."""


@dataclass
class _Gate:
    """Serialises bind/unbind of one conversation; dropped when nobody holds it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def frame_header(body: bytes) -> tuple[str, int, str] | None:
    """(conversation_id, seq, type) of a server frame, or None if it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    conversation_id, seq, frame_type = doc.get("conversation_id"), doc.get("seq"), doc.get("type")
    if not isinstance(conversation_id, str) or not isinstance(frame_type, str):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return conversation_id, seq, frame_type


class Fanout:
    def __init__(self, bus: Bus, *, prefetch: int = 256, op_timeout: float = 5.0) -> None:
        self._bus = bus
        self._prefetch = prefetch
        self._op_timeout = op_timeout
        self.queue_name = f"{bus.topology.namespace}.gateway.{uuid.uuid4().hex}"
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._sinks: dict[str, set[FrameSink]] = {}
        self._bound: set[str] = set()
        self._gates: dict[str, _Gate] = {}

    @property
    def consuming(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    @property
    def bound(self) -> frozenset[str]:
        return frozenset(self._bound)

    async def start(self) -> None:
        self._channel = await self._bus.channel(self._prefetch)
        self._queue = await self._channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_message)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def subscribe(self, conversation_id: str, sink: FrameSink) -> None:
        """Returns once frames of the conversation are routed here (raises if not)."""
        self._sinks.setdefault(conversation_id, set()).add(sink)
        try:
            await self._reconcile(conversation_id)
        except BaseException:
            self._forget(conversation_id, sink)
            raise

    async def unsubscribe(self, conversation_id: str, sink: FrameSink) -> None:
        self._forget(conversation_id, sink)
        try:
            await self._reconcile(conversation_id)
        except Exception:
            # The binding stays; frames for it find no sink and are dropped. Harmless.
            log.warning("unbind failed", extra={"conversation_id": conversation_id}, exc_info=True)

    async def reconcile_all(self) -> None:
        """Drop bindings nobody needs any more: an unbind that failed while the broker was
        away left its binding recorded, and the reconnect restored it."""
        for conversation_id in tuple(self._bound - self._sinks.keys()):
            try:
                await self._reconcile(conversation_id)
            except Exception:
                log.warning("unbind failed", extra={"conversation_id": conversation_id}, exc_info=True)

    def _forget(self, conversation_id: str, sink: FrameSink) -> None:
        sinks = self._sinks.get(conversation_id)
        if sinks is not None:
            sinks.discard(sink)
            if not sinks:
                del self._sinks[conversation_id]

    async def _reconcile(self, conversation_id: str) -> None:
        """Make the binding match the subscriber set, whatever happened while we waited."""
        gate = self._gates.setdefault(conversation_id, _Gate())
        gate.users += 1
        try:
            async with gate.lock:
                wanted = conversation_id in self._sinks
                if wanted == (conversation_id in self._bound):
                    return
                if not broker.connected(self._bus):
                    if wanted:
                        raise RuntimeError("the broker is not connected")
                    return  # unbound by reconcile_all once the broker is back
                if self._queue is None:
                    raise RuntimeError("not consuming yet (no broker connection)")
                exchange = self._bus.topology.frames_exchange
                if wanted:
                    await asyncio.wait_for(self._queue.bind(exchange, conversation_id), self._op_timeout)
                    self._bound.add(conversation_id)
                else:
                    await asyncio.wait_for(self._queue.unbind(exchange, conversation_id), self._op_timeout)
                    self._bound.discard(conversation_id)
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[conversation_id]

    def dispatch(self, routing_key: str, body: bytes) -> int:
        """Hand each frame of a message (one per line, in seq order) to every local sink of
        its conversation; returns how many frames were handed on."""
        sinks = self._sinks.get(routing_key)
        if not sinks:
            return 0
        handed = 0
        for line in body.split(FANOUT_SEPARATOR):
            header = frame_header(line)
            if header is None or header[0] != routing_key:
                # Never guess where a malformed frame belongs: that is how conversations leak.
                log.warning("dropped malformed frame", extra={"routing_key": routing_key})
                continue
            _, seq, frame_type = header
            TURN_CLOCK.saw(frame_type, line)
            for sink in tuple(sinks):
                try:
                    sink.deliver(routing_key, seq, frame_type, line)
                except Exception:
                    log.exception("frame delivery failed", extra={"conversation_id": routing_key})
            handed += 1
        return handed

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Dispatch before any await: aio-pika starts one task per delivery, in delivery order,
        # so only a synchronous hand-off keeps the broker's order of a conversation's frames.
        try:
            with processing(message.headers, message.exchange, message.routing_key):
                self.dispatch(message.routing_key or "", message.body)
        finally:
            await message.ack()
