"""The dead-letter queue: work the broker gave up on. Memory makes sure users hear of it.

Anything arrives here that a work queue rejected or returned `x-delivery-limit` times: a
`TurnRequested` from `log.<p>` or `turns.<p>` ends its turn with `turn.failed` code
`poison` (`ConversationLog.fail_dead_turn`); so does an `EventPosted`/`EventsPosted` that
carries a turn's end (`turn.completed`/`turn.failed`: the reasoner acked the turn once the
entry was confirmed, so nothing else would ever end it; `fail_dead_end`); one that does not
is logged with its turn_id (its frames are lost to the log; the turn's own end still comes);
anything else is logged.

Then it is kept: copied, with the broker's death headers and memory's outcome
(`x-agentry-handled-*`, agentry_shared.dead_letters), to `<ns>.dead.handled`, where
`agentry-admin dead list` shows it beside the ones not handled yet, and acked only once
the broker confirmed the copy. A copy that still cannot be made after a few attempts
(the broker is going away) sends the letter back to `<ns>.dead`, to be handled again
(idempotent). A letter whose handling keeps failing is kept too, after a few attempts
(outcome `error`): never looped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from agentry_shared.bus import HANDLED_DEAD_LETTERS, QUORUM, Bus, Consumer
from agentry_shared.contracts.events import LOG_ENTRY, EventPosted, EventsPosted
from agentry_shared.dead_letters import HANDLED_AT, HANDLED_KIND, HANDLED_OUTCOME
from agentry_shared.logs import bind_context
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from agentry_memory.log.inflight import InFlight
from agentry_memory.log.sequencer import ConversationLog, Outbound
from agentry_memory.metrics import DEAD_LETTERS
from agentry_memory.store.errors import StoreRefusal

log = logging.getLogger(__name__)

PREFETCH = 8
ATTEMPTS = 5
RETRY_DELAY_SECONDS = 0.2  # doubled after each attempt
TURN_ENDS: Final = frozenset({"turn.completed", "turn.failed"})


class DeadLetterConsumer:
    def __init__(
        self, bus: Bus, conversation_log: ConversationLog, *, retry_delay: float = RETRY_DELAY_SECONDS
    ) -> None:
        self.bus = bus
        self.log = conversation_log
        self.retry_delay = retry_delay
        self._consumer: Consumer | None = None
        self._in_flight = InFlight()

    async def start(self) -> None:
        channel = await self.bus.channel(PREFETCH)
        # Declared exactly as Bus.declare_exchanges does (a robust channel re-declares it).
        queue = await channel.declare_queue(self.bus.topology.dead_letter_queue, durable=True, arguments=QUORUM)
        handled = await channel.declare_queue(
            self.bus.topology.handled_dead_letter_queue, durable=True, arguments=HANDLED_DEAD_LETTERS
        )
        await handled.bind(self.bus.topology.handled_dead_letter_exchange)  # declared by Bus.declare_exchanges
        self._consumer = Consumer(queue, await queue.consume(self._in_flight.wrap(self.handle)))

    async def stop(self) -> None:
        """Stop taking dead letters and let those in hand finish."""
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        await self._in_flight.wait_idle()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        origin = _origin(message.headers)
        kept = False
        try:
            with processing(message.headers, self.bus.topology.dead_letter_exchange, None):
                kind, outcome = await self.process(message.body, origin)
                kept = await self._keep(message, kind, outcome)
            if kept:
                DEAD_LETTERS.labels(kind=kind, outcome=outcome).inc()
        finally:
            try:
                if kept:
                    await message.ack()
                else:  # back to <ns>.dead: handled again later (idempotent), listed as not handled
                    await message.nack(requeue=True)
            except Exception as exc:  # the channel is gone: it comes back, and handling is idempotent
                log.warning("could not settle a dead letter", extra={"error": repr(exc)})

    async def _keep(self, message: AbstractIncomingMessage, kind: str, outcome: str) -> bool:
        """Copy the handled letter to `<ns>.dead.handled` (confirmed); False if it could not be."""
        headers = {
            **(message.headers or {}),
            HANDLED_OUTCOME: outcome,
            HANDLED_KIND: kind,
            HANDLED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.bus.publish(
                    self.bus.topology.handled_dead_letter_exchange, "", message.body, headers=headers
                )
            except Exception as exc:
                if attempt == ATTEMPTS:
                    log.warning("a handled dead letter could not be kept; it goes back", extra={"error": repr(exc)})
                    return False
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            else:
                return True
        return False

    async def process(self, body: bytes, origin: dict[str, str]) -> tuple[str, str]:
        """Handle one dead letter; returns (kind, outcome) for the metrics. Never raises."""
        try:
            entry = LOG_ENTRY.validate_json(body)
        except ValidationError as exc:
            log.error("unreadable dead letter dropped", extra={**origin, "error": str(exc)[:300], "bytes": len(body)})
            return "unknown", "unreadable"
        with bind_context(turn_id=entry.turn_id, conversation_id=entry.scope.conversation_id):
            if isinstance(entry, EventPosted):
                log.error(
                    "an event was dead-lettered: its frame could not be sequenced",
                    extra={**origin, "event_id": entry.event_id, "frame_type": entry.frame.type},
                )
                frames = [entry.frame]
            elif isinstance(entry, EventsPosted):
                log.error(
                    "events were dead-lettered: their frames could not be sequenced",
                    extra={**origin, "event_ids": [e.event_id for e in entry.events]},
                )
                frames = [e.frame for e in entry.events]
            else:
                return entry.kind, await self._fail_turn(lambda: self.log.fail_dead_turn(entry), origin)
            if not any(frame.type in TURN_ENDS for frame in frames):
                return entry.kind, "logged"
            scope, turn_id = entry.scope, entry.turn_id
            return entry.kind, await self._fail_turn(lambda: self.log.fail_dead_end(scope, turn_id), origin)

    async def _fail_turn(self, fail: Callable[[], Awaitable[list[Outbound]]], origin: dict[str, str]) -> str:
        attempt = 1
        while True:
            try:
                outbound = await fail()
                for out in outbound:
                    await self.bus.publish(out.exchange, out.routing_key, out.body, persistent=out.persistent)
            except StoreRefusal as exc:
                log.error("dead-lettered turn refused; nobody to tell", extra={**origin, "reason": str(exc)})
                return "refused"
            except Exception:
                if attempt >= ATTEMPTS:
                    log.exception("dead-lettered turn could not be failed; dropped", extra=origin)
                    return "error"
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                attempt += 1
                continue
            if not outbound:
                return "already_ended"
            log.error("dead-lettered turn failed as poison", extra=origin)
            return "turn_failed"


def _origin(headers: dict[str, Any] | None) -> dict[str, str]:
    """Where and why it died, from the broker's x-first-death-* headers (for the logs)."""
    headers = headers or {}
    found = {
        "dead_queue": headers.get("x-first-death-queue"),
        "dead_reason": headers.get("x-first-death-reason"),
    }
    return {key: value.decode() if isinstance(value, bytes) else str(value) for key, value in found.items() if value}
