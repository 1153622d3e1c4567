"""The broker side of the sequencer: one task per held log partition, one message at a time.

Memory replicas share the `log.<p>` partitions (agentry_shared.partitions decides who
holds which). Letting one go cancels its task, which finishes the entry in hand and then
closes the partition's channel: the broker returns the rest in queue order and makes the
new owner, already subscribed and waiting under single active consumer, active.

Order is the point, and only closing a channel keeps it. Measured on RabbitMQ 3.10
quorum queues: a nack (or the queue iterator's close, which nacks what it prefetched)
lets messages prefetched later overtake the ones handed back; a channel close returns
every unacked message in queue order. So a partition never requeues: a failing entry is
retried in place a few times, and if it still fails the partition closes its channel
(the entry and all behind it go back, in order), pauses and subscribes again. The
quorum queue counts each return and dead-letters an entry that keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agentry_shared.bus import Bus
from agentry_shared.contracts.events import LOG_ENTRY, LogEntry
from agentry_shared.logs import bind_context
from agentry_shared.partitions import PartitionShare
from agentry_shared.settings import CommonSettings
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from agentry_memory.log.sequencer import ConversationLog
from agentry_memory.metrics import LOG_ENTRIES, LOG_ENTRY_DURATION, PARTITIONS_OWNED, REBALANCES
from agentry_memory.store.errors import StoreRefusal

log = logging.getLogger(__name__)

PREFETCH = 32
ATTEMPTS = 3  # per delivery, before the entry is handed back to the broker
RETRY_DELAY_SECONDS = 0.2  # doubled after each attempt
RESUBSCRIBE_PAUSE_SECONDS = 1.0


class LogConsumer:
    """Consumes this replica's share of the `log.<p>` queues (single active consumer on
    each: one writer per partition, whatever the replicas think for a moment)."""

    def __init__(
        self,
        bus: Bus,
        conversation_log: ConversationLog,
        *,
        retry_delay: float = RETRY_DELAY_SECONDS,
        resubscribe_pause: float = RESUBSCRIBE_PAUSE_SECONDS,
        settings: CommonSettings | None = None,
    ) -> None:
        self.bus = bus
        self.log = conversation_log
        self.retry_delay = retry_delay
        self.resubscribe_pause = resubscribe_pause
        self.settings = settings or CommonSettings()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._share: PartitionShare | None = None

    async def start(self) -> None:
        """Declare every partition's queues now (so nothing sent before some replica holds
        it is lost), then take this replica's share."""
        t = self.bus.topology
        channel = await self.bus.channel(1)
        try:
            for p in range(t.partitions):
                await self._declare(channel, p)
        finally:
            await channel.close()
        self._share = PartitionShare(
            self.bus,
            "memory",
            self.settings,
            acquire=self._acquire,
            release=self._release,
            owned=PARTITIONS_OWNED,
            rebalances=REBALANCES,
        )
        await self._share.start()

    async def _acquire(self, p: int) -> None:
        self._tasks[p] = asyncio.create_task(self._partition(p), name=f"log-{p}")

    async def _release(self, p: int) -> None:
        task = self._tasks.pop(p)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _declare(self, channel: AbstractRobustChannel, p: int) -> None:
        t = self.bus.topology
        await self.bus.declare_work_queue(channel, t.log_queue(p), t.log_exchange, str(p), single_active=True)
        # Declared here too so a turn forwarded before any reasoner started is kept, not dropped.
        await self.bus.declare_work_queue(channel, t.turns_queue(p), t.turns_exchange, str(p), single_active=True)

    async def stop(self) -> None:
        """Stop taking entries; each partition finishes (and acks) the one it holds, then
        goes to another replica."""
        if self._share is not None:
            await self._share.stop()
            self._share = None

    async def _partition(self, p: int) -> None:
        """Owns partition p until cancelled; after trouble, starts over on a fresh channel."""
        t = self.bus.topology
        while True:
            channel: AbstractRobustChannel | None = None
            try:
                if self.bus.connection is not None:  # broker away: wait rather than fail every second
                    await self.bus.connection.connected.wait()
                channel = await self.bus.channel(PREFETCH)
                queue = await self.bus.declare_work_queue(
                    channel, t.log_queue(p), t.log_exchange, str(p), single_active=True
                )
                inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
                await queue.consume(_put_into(inbox))
                await self._drain(inbox)
            except Exception:
                log.exception("log partition failed; subscribing again", extra={"partition": p})
            finally:
                if channel is not None:
                    await _close(channel)  # hands back what we hold, in queue order
            await asyncio.sleep(self.resubscribe_pause)

    async def _drain(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        """Handle entries in arrival order; returns when one must go back to the broker."""
        while True:
            message = await inbox.get()
            if _lost(message):
                continue  # from a connection since lost: the broker has it back already
            handling = asyncio.ensure_future(self.handle(message))
            try:
                settled = await asyncio.shield(handling)
            except asyncio.CancelledError:
                await handling  # finish and settle the entry in hand, then stop
                raise
            if not settled:
                return

    async def handle(self, message: AbstractIncomingMessage) -> bool:
        """Store, publish, ack. False: it kept failing, hand it (and what follows) back."""
        started = time.perf_counter()
        try:
            entry = LOG_ENTRY.validate_json(message.body)
        except ValidationError as exc:
            log.error(
                "unparseable log entry dead-lettered", extra={"errors": exc.error_count(), "error": str(exc)[:500]}
            )
            LOG_ENTRIES.labels(kind="unknown", outcome="rejected").inc()
            await _settle(message.reject(requeue=False))
            return True
        with (
            processing(message.headers, message.exchange, message.routing_key, entry.traceparent),
            bind_context(turn_id=entry.turn_id, conversation_id=entry.scope.conversation_id),
        ):
            outcome = await self._apply(entry, message.body)
            if outcome == "failed":
                return False
            if outcome == "rejected":
                await _settle(message.reject(requeue=False))
            elif not await _settle(message.ack()):
                outcome = "unacked"
            LOG_ENTRIES.labels(kind=entry.kind, outcome=outcome).inc()
            LOG_ENTRY_DURATION.labels(kind=entry.kind).observe(time.perf_counter() - started)
            return True

    async def _apply(self, entry: LogEntry, body: bytes) -> str:
        """ingest + publish, retried in place: "ok", "rejected" (dead-letter it) or "failed"."""
        attempt = 1
        while True:
            try:
                outbound = await self.log.ingest(entry, body)
                # Published together and confirmed together (one round trip, not one each);
                # one channel keeps them in this order at the broker. Work (a forwarded turn,
                # which a reasoner waits for) goes ahead of the fan-out, which only informs:
                # the frames' order is kept (they are in one message, or in entries acked one
                # after another), and a reasoner's frames of the turn are sequenced after
                # this entry whatever reaches the broker first.
                work_first = sorted(outbound, key=lambda o: not o.persistent)
                await asyncio.gather(
                    *(self.bus.publish(o.exchange, o.routing_key, o.body, persistent=o.persistent) for o in work_first)
                )
                return "ok"
            except StoreRefusal as exc:
                log.error("log entry refused, dead-lettered", extra={"kind": entry.kind, "reason": str(exc)})
                return "rejected"
            except Exception:
                if attempt >= ATTEMPTS:
                    log.exception("log entry failed; handing it back", extra={"kind": entry.kind})
                    LOG_ENTRIES.labels(kind=entry.kind, outcome="handed_back").inc()
                    return "failed"
                log.warning("log entry failed; retrying", exc_info=True, extra={"attempt": attempt})
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                attempt += 1


def _put_into(
    inbox: asyncio.Queue[AbstractIncomingMessage],
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that only queues: delivery order is handling order."""

    async def deliver(message: AbstractIncomingMessage) -> None:
        inbox.put_nowait(message)

    return deliver


def _lost(message: AbstractIncomingMessage) -> bool:
    """True if the message came on a channel that has closed since (aio-pika raises then)."""
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:
        return True


async def _settle(outcome: Awaitable[None]) -> bool:
    """Ack or reject; if the channel is gone the broker redelivers, which is harmless."""
    try:
        await outcome
    except Exception as exc:
        log.warning("could not settle a log entry; the broker will redeliver it", extra={"error": repr(exc)})
        return False
    return True


async def _close(channel: AbstractRobustChannel) -> None:
    try:
        await channel.close()
    except Exception as exc:
        log.warning("closing a log channel failed", extra={"error": repr(exc)})
