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
(idempotent).

A letter of a user erased since (`ConversationLog.erased`: nothing of it is stored, and
no turn is failed) is kept too, then its user's letters are taken out of
`<ns>.dead.handled` again (`purge`). Kept first, checked after, as `erase-user` records
the erasure first and purges after: either the erasure was recorded before this check
(memory purges) or after it, and then the copy was already there for erase-user's purge.
Checking before keeping would let a copy made just after erase-user's purge stay.

Ending a dead turn that keeps raising (the store or the broker away for a while: a MongoDB
failover, a broker restart) is retried: `ATTEMPTS` quick attempts (0.2 s doubling, ~3 s),
then on, the wait doubling up to `RETRY_CAP_SECONDS`, each failure logged as an error with
the turn_id, for `RETRY_WINDOW_SECONDS` from the first attempt; only then is the letter kept
with outcome `error` (its user never told: the `AgentryDeadLetters` alert says so). Both
bounds matter. The cap: once the store is back, the user hears within half a minute, not
after a wait that doubled for minutes. The window: outages outlast ~3 s, and giving up
then left users silent for good; but a deterministic bug raises on every attempt, and a
letter retried forever would hold one of the `PREFETCH` consumer slots for good (a few of
them would stall the queue) and hide the bug. Ten minutes outlasts a failover or a restart
and stays well under RabbitMQ's `consumer_timeout` (30 min by default), past which the
broker would close the channel of a delivery held unacked.

`stop()` does not wait that window out: a letter waiting to retry goes back to `<ns>.dead`
at once (a confirmed copy at its tail, then the ack: a requeue would count as a delivery,
see `_copy_back`), for another replica or this one restarted (handling is idempotent); an
attempt already under way finishes first. A letter whose channel closed meanwhile (the
connection was lost) is not retried either: the broker took it back and delivers it
again, and two handlers of one letter would keep it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from agentry_shared.bus import HANDLED_DEAD_LETTERS, QUORUM, Bus, Consumer, message_ids
from agentry_shared.contracts.events import LOG_ENTRY, EventPosted, EventsPosted
from agentry_shared.dead_letters import HANDLED_AT, HANDLED_KIND, HANDLED_OUTCOME, purge
from agentry_shared.logs import bind_context
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from agentry_memory.log.inflight import InFlight
from agentry_memory.log.sequencer import ConversationLog, Outbound
from agentry_memory.metrics import DEAD_LETTERS
from agentry_memory.store.errors import StoreRefusal

log = logging.getLogger(__name__)

PREFETCH = 8
ATTEMPTS = 5  # quick attempts (keeping a copy: all of them; ending a turn: then the window)
RETRY_DELAY_SECONDS = 0.2  # doubled after each attempt
RETRY_CAP_SECONDS = 30.0  # ending a turn: the longest wait between two attempts
RETRY_WINDOW_SECONDS = 600.0  # ending a turn: retried this long from its first attempt
TURN_ENDS: Final = frozenset({"turn.completed", "turn.failed"})
HANDED_BACK: Final = "handed_back"  # stopping, or its channel gone: back to <ns>.dead, not kept


class DeadLetterConsumer:
    def __init__(
        self,
        bus: Bus,
        conversation_log: ConversationLog,
        *,
        retry_delay: float = RETRY_DELAY_SECONDS,
        retry_cap: float = RETRY_CAP_SECONDS,
        retry_window: float = RETRY_WINDOW_SECONDS,
    ) -> None:
        self.bus = bus
        self.log = conversation_log
        self.retry_delay = retry_delay
        self.retry_cap = retry_cap
        self.retry_window = retry_window
        self._consumer: Consumer | None = None
        self._in_flight = InFlight()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        channel = await self.bus.channel(PREFETCH)
        # Declared exactly as Bus.declare_exchanges does (a robust channel re-declares it).
        queue = await channel.declare_queue(self.bus.topology.dead_letter_queue, durable=True, arguments=QUORUM)
        handled = await channel.declare_queue(
            self.bus.topology.handled_dead_letter_queue, durable=True, arguments=HANDLED_DEAD_LETTERS
        )
        await handled.bind(self.bus.topology.handled_dead_letter_exchange)  # declared by Bus.declare_exchanges
        self._stopping.clear()
        self._consumer = Consumer(queue, await queue.consume(self._in_flight.wrap(self.handle)))

    async def stop(self) -> None:
        """Stop taking dead letters and let those in hand finish; one waiting to retry
        goes back to `<ns>.dead` at once (an attempt under way finishes first)."""
        if self._consumer is not None:
            await self._consumer.cancel()  # first: a letter handed back is not delivered here again
            self._consumer = None
        self._stopping.set()
        await self._in_flight.wait_idle()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        # Every line of the letter names its turn, those of keeping and settling it too.
        with bind_context(**message_ids(message.body)):
            await self._handle(message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        origin = _origin(message.headers)
        kept = False
        try:
            with processing(message.headers, self.bus.topology.dead_letter_exchange, None):
                kind, outcome = await self.process(message.body, origin, lambda: _held(message))
                if outcome != HANDED_BACK:
                    kept = await self._keep(message, kind, outcome)
                    if kept:
                        outcome = await self._forget_if_erased(message.body, outcome)
                        DEAD_LETTERS.labels(kind=kind, outcome=outcome).inc()
                elif _held(message):  # stopping: a copy at the tail replaces it
                    kept = await self._copy_back(message)
        finally:
            try:
                if kept:
                    await message.ack()
                else:  # back to <ns>.dead: handled again later (idempotent), listed as not handled
                    await message.nack(requeue=True)
            except Exception as exc:  # the channel is gone: it comes back, and handling is idempotent
                log.warning("could not settle a dead letter", extra={"error": repr(exc)})

    async def _copy_back(self, message: AbstractIncomingMessage) -> bool:
        """Put the letter back at the tail of `<ns>.dead` as it came (confirmed), to be acked.
        Not a requeue: a quorum queue counts that as a delivery, and on RabbitMQ 4 (a
        default delivery limit of 20, and nowhere to go past it) a letter handed back by
        twenty stops during a long outage would be dropped."""
        headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
        try:
            await self.bus.publish(
                self.bus.topology.dead_letter_exchange, message.routing_key or "#", message.body, headers=headers
            )
        except Exception as exc:
            log.warning("a dead letter could not be copied back; it is requeued", extra={"error": repr(exc)})
            return False
        return True

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

    async def _forget_if_erased(self, body: bytes, outcome: str) -> str:
        """After keeping a letter: if its user was erased since, take the user's letters
        out of `<ns>.dead.handled` (outcome `erased`). Never raises: a purge that fails is
        logged, and erase-user run again removes what is left."""
        try:
            entry = LOG_ENTRY.validate_json(body)
            if not await self.log.erased(entry):
                return outcome
            assert self.bus.connection is not None
            channel = await self.bus.connection.channel(publisher_confirms=True)
            try:
                scope = entry.scope
                t = self.bus.topology
                await purge(
                    channel, t.handled_dead_letter_queue, t.handled_dead_letter_exchange, scope.tenant_id, scope.user_id
                )
            finally:
                await channel.close()
        except ValidationError:
            return outcome  # names nobody
        except Exception as exc:
            log.error(
                "a dead letter of an erased user was kept and could not be taken out; run erase-user again",
                extra={"error": repr(exc)},
            )
            return outcome
        log.warning("dead letter of a user erased since; taken out of the kept ones")
        return "erased"

    async def process(
        self, body: bytes, origin: dict[str, str], held: Callable[[], bool] = lambda: True
    ) -> tuple[str, str]:
        """Handle one dead letter; returns (kind, outcome) for the metrics. Never raises.
        Outcome `HANDED_BACK`: stopping, or `held()` turned False (the delivery's channel is
        gone), while ending its turn waited to retry: it goes back unhandled."""
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
                return entry.kind, await self._fail_turn(lambda: self.log.fail_dead_turn(entry), origin, held)
            if not any(frame.type in TURN_ENDS for frame in frames):
                return entry.kind, "logged"
            scope, turn_id = entry.scope, entry.turn_id
            return entry.kind, await self._fail_turn(lambda: self.log.fail_dead_end(scope, turn_id), origin, held)

    async def _fail_turn(
        self, fail: Callable[[], Awaitable[list[Outbound]]], origin: dict[str, str], held: Callable[[], bool]
    ) -> str:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                outbound = await fail()
                for out in outbound:
                    await self.bus.publish(out.exchange, out.routing_key, out.body, persistent=out.persistent)
            except StoreRefusal as exc:
                log.error("dead-lettered turn refused; nobody to tell", extra={**origin, "reason": str(exc)})
                return "refused"
            except Exception as exc:
                elapsed = time.monotonic() - started
                if attempt >= ATTEMPTS and elapsed >= self.retry_window:
                    log.exception(
                        "dead-lettered turn could not be failed; kept, its user not told",
                        extra={**origin, "attempts": attempt, "seconds": round(elapsed, 1)},
                    )
                    return "error"
                delay = self.retry_delay * 2 ** (attempt - 1)
                if attempt >= ATTEMPTS:  # past the quick attempts: until the window ends
                    delay = max(0.0, min(delay, self.retry_cap, self.retry_window - elapsed))
                    log.error(
                        "dead-lettered turn could not be failed yet; retrying",
                        exc_info=attempt == ATTEMPTS,  # the traceback once
                        extra={**origin, "attempt": attempt, "retry_in": round(delay, 3), "error": repr(exc)},
                    )
                if await self._stopped_within(delay):
                    log.warning("stopping: the dead-lettered turn goes back, to be failed again", extra=origin)
                    return HANDED_BACK
                if not held():
                    log.warning(
                        "the broker took the dead-lettered turn back (channel closed); it comes again", extra=origin
                    )
                    return HANDED_BACK
                attempt += 1
                continue
            if not outbound:
                return "already_ended"
            log.error("dead-lettered turn failed as poison", extra=origin)
            return "turn_failed"

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`; True, at once, if stop() is (or was) called meanwhile."""
        if self._stopping.is_set():
            return True
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _held(message: AbstractIncomingMessage) -> bool:
    """Whether the delivery can still be settled: its channel is open."""
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:  # aio-pika's answer for a closed one
        return False


def _origin(headers: dict[str, Any] | None) -> dict[str, str]:
    """Where and why it died, from the broker's x-first-death-* headers (for the logs)."""
    headers = headers or {}
    found = {
        "dead_queue": headers.get("x-first-death-queue"),
        "dead_reason": headers.get("x-first-death-reason"),
    }
    return {key: value.decode() if isinstance(value, bytes) else str(value) for key, value in found.items() if value}
