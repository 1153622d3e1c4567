"""LogConsumer's settle rules, with a fake broker: what is acked, rejected or handed back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from agentry_memory.log.consumer import LogConsumer
from agentry_memory.log.sequencer import ConversationLog, Outbound
from agentry_memory.store.errors import Forbidden
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.events import LogEntry
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

SCOPE = Scope(tenant_id="acme", user_id="alice", conversation_id="c1")
OUT = [Outbound("x.frames", "c1", b"frame", False), Outbound("x.turns", "0", b"turn", True)]


def turn_body(turn_id: str) -> bytes:
    return encode(TurnRequested(scope=SCOPE, turn_id=turn_id, text="hi", accepted_at=datetime.now(UTC)))


class FakeChannel:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.is_closed = False

    async def close(self) -> None:
        self.is_closed = True
        self.events.append("channel closed")


class FakeMessage:
    def __init__(self, body: bytes, events: list[str]) -> None:
        self.body, self.events = body, events
        self.channel = FakeChannel(events)
        # What the consumer reads for its trace span (tracing.processing).
        self.headers: dict[str, object] = {}
        self.exchange, self.routing_key = "t.log", "0"

    async def ack(self) -> None:
        self.events.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.events.append(f"reject(requeue={requeue})")


class FakeQueue:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.messages = messages

    async def consume(self, callback: Callable[[Any], Awaitable[None]]) -> str:
        for message in self.messages:
            await callback(message)
        return "ctag"


class FakeBus:
    """Records publishes; every subscription gets the same messages again (a redelivery)."""

    topology = Topology("x", 1)
    connection = None

    def __init__(self, events: list[str], messages: list[FakeMessage]) -> None:
        self.events, self.messages = events, messages
        self.resubscribed = asyncio.Event()

    async def channel(self, prefetch: int) -> FakeChannel:
        return FakeChannel(self.events)

    async def declare_work_queue(self, *_: Any, single_active: bool) -> FakeQueue:
        if "subscribe" in self.events:
            self.resubscribed.set()
        self.events.append("subscribe")
        return FakeQueue(self.messages)

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, persistent: bool = True) -> None:
        self.events.append(f"publish {body.decode()}")


class FakeLog:
    """Stands in for ConversationLog: fails `failures` times, or waits to be released."""

    def __init__(self, events: list[str], error: Exception | None = None, failures: int = 0) -> None:
        self.events, self.error, self.failures = events, error, failures
        self.release: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def ingest(self, entry: LogEntry, body: bytes | None = None) -> list[Outbound]:
        self.events.append(f"ingest {entry.turn_id}")
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        if self.error is not None and self.failures:
            self.failures -= 1
            raise self.error
        return OUT


def consumer(events: list[str], fake_log: FakeLog, messages: list[FakeMessage] | None = None) -> LogConsumer:
    bus = cast(Bus, FakeBus(events, messages or []))
    return LogConsumer(bus, cast(ConversationLog, fake_log), retry_delay=0, resubscribe_pause=0)


def fake_bus(log_consumer: LogConsumer) -> FakeBus:
    return cast(FakeBus, log_consumer.bus)


def handle(log_consumer: LogConsumer, message: FakeMessage) -> Any:
    return log_consumer.handle(cast(AbstractIncomingMessage, message))


async def test_publishes_the_work_then_the_fanout_then_acks() -> None:
    events: list[str] = []
    assert await handle(consumer(events, FakeLog(events)), FakeMessage(turn_body("t1"), events)) is True
    assert events == ["ingest t1", "publish turn", "publish frame", "ack"]


async def test_unparseable_entry_is_dead_lettered() -> None:
    events: list[str] = []
    message = FakeMessage(b'{"kind": "turn.requested"}', events)
    assert await handle(consumer(events, FakeLog(events)), message) is True
    assert events == ["reject(requeue=False)"]


async def test_refused_entry_is_dead_lettered() -> None:
    events: list[str] = []
    fake_log = FakeLog(events, Forbidden("not yours"), failures=1)
    assert await handle(consumer(events, fake_log), FakeMessage(turn_body("t1"), events)) is True
    assert events == ["ingest t1", "reject(requeue=False)"]


async def test_a_passing_failure_is_retried_in_place() -> None:
    events: list[str] = []
    fake_log = FakeLog(events, OSError("disk busy"), failures=2)
    assert await handle(consumer(events, fake_log), FakeMessage(turn_body("t1"), events)) is True
    assert events == ["ingest t1", "ingest t1", "ingest t1", "publish turn", "publish frame", "ack"]


async def test_a_lasting_failure_hands_everything_back_in_order() -> None:
    events: list[str] = []
    fake_log = FakeLog(events, OSError("disk full"), failures=3)
    messages = [FakeMessage(turn_body("t1"), events), FakeMessage(turn_body("t2"), events)]
    log_consumer = consumer(events, fake_log, messages)
    task = asyncio.create_task(log_consumer._partition(0))
    await fake_bus(log_consumer).resubscribed.wait()
    await fake_log.started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # t1 never overtaken by t2: no nack, the channel close returns both; then t1 again, first.
    assert events[:6] == ["subscribe", "ingest t1", "ingest t1", "ingest t1", "channel closed", "subscribe"]
    assert events[6:9] == ["ingest t1", "publish turn", "publish frame"]


async def test_stop_lets_the_entry_in_hand_finish() -> None:
    events: list[str] = []
    fake_log = FakeLog(events)
    fake_log.release = asyncio.Event()
    messages = [FakeMessage(turn_body("t1"), events), FakeMessage(turn_body("t2"), events)]
    task = asyncio.create_task(consumer(events, fake_log, messages)._partition(0))
    await fake_log.started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done() and "ack" not in events  # still finishing its entry
    fake_log.release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert events == ["subscribe", "ingest t1", "publish turn", "publish frame", "ack", "channel closed"]


async def test_entries_of_a_lost_channel_are_skipped() -> None:
    events: list[str] = []
    stale, fresh = FakeMessage(turn_body("t1"), events), FakeMessage(turn_body("t2"), events)
    stale.channel.is_closed = True
    fake_log = FakeLog(events)
    task = asyncio.create_task(consumer(events, fake_log, [stale, fresh])._partition(0))
    await fake_log.started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert "ingest t1" not in events and "ingest t2" in events


class GoneMessage(FakeMessage):
    """aio-pika raises on `.channel` once the channel a message came on has closed."""

    @property
    def channel(self) -> FakeChannel:
        raise ChannelInvalidStateError("closed")

    @channel.setter
    def channel(self, _: FakeChannel) -> None:
        pass


async def test_entries_whose_channel_aio_pika_reports_gone_are_skipped() -> None:
    events: list[str] = []
    gone, fresh = GoneMessage(turn_body("t1"), events), FakeMessage(turn_body("t2"), events)
    fake_log = FakeLog(events)
    task = asyncio.create_task(consumer(events, fake_log, [gone, fresh])._partition(0))
    await fake_log.started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert events[:3] == ["subscribe", "ingest t2", "publish turn"]
