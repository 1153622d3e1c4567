"""Dead letters: ConversationLog.fail_dead_turn on the real store, DeadLetterConsumer with a
fake bus, and against the real RabbitMQ where the broker's side is the point (a letter that
keeps failing, handed back by stop(); what memory keeps is listed in tools/admin/tests)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from agentry_memory.log.dead_letters import ATTEMPTS, DeadLetterConsumer
from agentry_memory.log.sequencer import ConversationLog, Outbound
from agentry_memory.store import Store
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.events import EventPosted, EventsPosted, PostedEvent, TurnCheckpoint
from agentry_shared.contracts.frames import FANOUT_SEPARATOR, MessageDelta, TurnCompleted
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.dead_letters import HANDLED_AT, HANDLED_KIND, HANDLED_OUTCOME
from agentry_shared.logs import JsonFormatter
from agentry_shared.testing import until
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from prometheus_client import REGISTRY

TOPOLOGY = Topology("test", 4)


def turn(scope: Scope, turn_id: str = "t1") -> TurnRequested:
    return TurnRequested(
        scope=scope, turn_id=turn_id, text="hello", client_message_id=f"m-{turn_id}", accepted_at=datetime.now(UTC)
    )


def bodies(outbound: list[Outbound]) -> list[dict[str, Any]]:
    return [json.loads(out.body) for out in outbound]


async def test_a_known_turn_fails_as_poison_after_its_accepted_frame(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope))
    await store.begin_turn(scope, "t1")
    delta = MessageDelta(conversation_id=scope.conversation_id, turn_id="t1", text="par")
    await log.ingest(EventPosted(scope=scope, turn_id="t1", event_id="t1:1:1", frame=delta))

    outbound = await log.fail_dead_turn(turn(scope))
    accepted, failed = bodies(outbound)
    assert (accepted["type"], accepted["seq"]) == ("message.accepted", 1)  # the same frame, again
    assert failed["type"] == "turn.failed" and failed["seq"] == 3 and failed["turn_id"] == "t1"
    assert failed["error"]["code"] == "poison" and "repeated attempts" in failed["error"]["message"]
    assert all(
        (o.exchange, o.routing_key, o.persistent) == ("test.frames", scope.conversation_id, False) for o in outbound
    )
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.finished_by) == ("failed", "t1:dead")
    assert await log.fail_dead_turn(turn(scope)) == outbound  # a redelivery repeats, stores nothing new
    assert len(await store.frames_after(scope, 0, 100)) == 3


async def test_an_unknown_turn_is_added_then_failed(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    outbound = await log.fail_dead_turn(turn(scope, "lost"))
    assert [(b["type"], b["seq"]) for b in bodies(outbound)] == [("message.accepted", 1), ("turn.failed", 2)]
    assert all(o.exchange == "test.frames" for o in outbound)  # never forwarded to a reasoner
    assert (await store.turn_status(scope, "lost")).state == "failed"
    assert [m.content for m in (await store.context(scope, "lost", 40)).messages] == ["hello"]


async def test_a_turn_that_already_ended_is_left_alone(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope))
    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="hi")
    await log.ingest(EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done))
    assert await log.fail_dead_turn(turn(scope)) == []
    assert (await store.turn_status(scope, "t1")).state == "completed"


async def test_a_turn_of_someone_elses_conversation_is_refused(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    log = ConversationLog(store, TOPOLOGY)
    with pytest.raises(Forbidden):
        await log.fail_dead_turn(turn(scope.model_copy(update={"user_id": "mallory"})))
    assert await store.frames_after(scope, 0, 10) == []


async def test_a_final_frame_through_the_log_finishes_its_turn(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope))
    done = TurnCompleted(conversation_id=scope.conversation_id, text="hi")  # no turn_id: the entry's is used
    [out] = await log.ingest(EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done))
    assert json.loads(out.body)["turn_id"] == "t1"
    assert (await store.turn_status(scope, "t1")).state == "completed"


# ---- the adapter ----------------------------------------------------------------------


class FakeChannel:
    is_closed = False


class FakeMessage:
    def __init__(self, body: bytes, headers: dict[str, Any] | None = None) -> None:
        self.body, self.headers, self.acked, self.requeued = body, headers or {}, 0, 0
        self.channel = FakeChannel()

    async def ack(self) -> None:
        self.acked += 1

    async def nack(self, requeue: bool = True) -> None:
        assert requeue
        self.requeued += 1


class FakeBus:
    topology = TOPOLOGY

    def __init__(self, keep_failures: int = 0) -> None:
        self.published: list[tuple[str, str, bytes, bool]] = []
        self.kept: list[tuple[bytes, dict[str, Any]]] = []  # to <ns>.dead.handled
        self.keep_failures = keep_failures

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        persistent: bool = True,
        headers: dict[str, Any] | None = None,
    ) -> None:
        if (exchange, routing_key) == (TOPOLOGY.handled_dead_letter_exchange, ""):
            if self.keep_failures > 0:
                self.keep_failures -= 1
                raise ConnectionError("the broker is going away")
            self.kept.append((body, headers or {}))
        else:
            self.published.append((exchange, routing_key, body, persistent))


class FlakyLog:
    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    async def erased(self, entry: Any) -> bool:
        return False

    async def fail_dead_turn(self, turn: TurnRequested) -> list[Outbound]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return [Outbound("test.frames", turn.scope.conversation_id, b"failed", False)]


def adapter(conversation_log: Any, keep_failures: int = 0, **retry: float) -> tuple[DeadLetterConsumer, FakeBus]:
    bus = FakeBus(keep_failures)
    retry.setdefault("retry_delay", 0)
    consumer = DeadLetterConsumer(cast(Bus, bus), cast(ConversationLog, conversation_log), **retry)
    return consumer, bus


async def handle(consumer: DeadLetterConsumer, message: FakeMessage) -> None:
    await consumer.handle(cast(AbstractIncomingMessage, message))


async def test_a_dead_turn_is_published_then_acked(store: Store, scope: Scope) -> None:
    consumer, bus = adapter(ConversationLog(store, TOPOLOGY))
    message = FakeMessage(encode(turn(scope)), {"x-first-death-queue": "test.turns.1", "x-first-death-reason": b"x"})
    await handle(consumer, message)
    assert [json.loads(body)["type"] for (_, _, body, _) in bus.published] == ["message.accepted", "turn.failed"]
    assert message.acked == 1
    # Kept for the operator, as it came, with where it died and what memory did.
    [(body, headers)] = bus.kept
    assert body == message.body and headers["x-first-death-queue"] == "test.turns.1"
    assert (headers[HANDLED_OUTCOME], headers[HANDLED_KIND]) == ("turn_failed", "turn.requested")
    assert datetime.fromisoformat(headers[HANDLED_AT]).tzinfo is not None


async def test_a_letter_that_cannot_be_kept_goes_back_unacked(store: Store, scope: Scope) -> None:
    consumer, bus = adapter(ConversationLog(store, TOPOLOGY), keep_failures=2)
    await handle(consumer, passing := FakeMessage(encode(turn(scope))))
    assert (passing.acked, passing.requeued, len(bus.kept)) == (1, 0, 1)  # a passing failure: retried

    consumer, bus = adapter(ConversationLog(store, TOPOLOGY), keep_failures=99)
    await handle(consumer, lasting := FakeMessage(encode(turn(scope, "t2"))))
    assert (lasting.acked, lasting.requeued, bus.kept) == (0, 1, [])  # back to <ns>.dead, handled again later


async def test_a_letter_that_cannot_be_kept_or_settled_is_logged_with_its_turn(store: Store, scope: Scope) -> None:
    """Keeping and settling a letter happen after its handling: their lines name its turn
    too, so an operator following a poison turn finds why it went back."""

    class Unsettled(FakeMessage):
        async def nack(self, requeue: bool = True) -> None:
            raise ConnectionError("the channel is gone")

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("memory"))
    logger = logging.getLogger("agentry_memory.log.dead_letters")
    logger.addHandler(handler)
    try:
        consumer, _bus = adapter(ConversationLog(store, TOPOLOGY), keep_failures=99)
        await handle(consumer, Unsettled(encode(turn(scope, "t7"))))
    finally:
        logger.removeHandler(handler)
    warnings = [json.loads(line) for line in lines.getvalue().splitlines() if '"level": "warning"' in line]
    assert [(w["msg"], w.get("turn_id"), w.get("conversation_id")) for w in warnings] == [
        ("a handled dead letter could not be kept; it goes back", "t7", scope.conversation_id),
        ("could not settle a dead letter", "t7", scope.conversation_id),
    ]


async def test_events_and_unreadable_letters_are_logged_and_acked(scope: Scope, caplog: Any) -> None:
    consumer, bus = adapter(FlakyLog(OSError(), 0))
    frame = MessageDelta(conversation_id=scope.conversation_id, turn_id="t9", text="x")
    letters = [
        FakeMessage(encode(EventPosted(scope=scope, turn_id="t9", event_id="e", frame=frame))),
        FakeMessage(b"?"),
    ]
    for message in letters:
        await handle(consumer, message)
        assert message.acked == 1
    assert bus.published == []
    assert [headers[HANDLED_OUTCOME] for _, headers in bus.kept] == ["logged", "unreadable"]
    assert "could not be sequenced" in caplog.text and "unreadable dead letter" in caplog.text
    assert any(getattr(record, "event_id", None) == "e" for record in caplog.records)


async def test_passing_failures_are_retried_lasting_ones_kept_as_errors_after_the_window(scope: Scope) -> None:
    flaky = FlakyLog(OSError("disk busy"), failures=2)
    consumer, bus = adapter(flaky)
    await handle(consumer, message := FakeMessage(encode(turn(scope))))
    assert (flaky.calls, len(bus.published), message.acked) == (3, 1, 1)

    # A deterministic failure is retried past the quick attempts, until the window ends,
    # then kept with outcome `error`: it cannot hold a consumer slot for good.
    broken = FlakyLog(OSError("disk gone"), failures=10**9)
    consumer, bus = adapter(broken, retry_delay=0.001, retry_cap=0.01, retry_window=0.3)
    await handle(consumer, message := FakeMessage(encode(turn(scope))))
    assert broken.calls > ATTEMPTS and bus.published == []
    assert (message.acked, message.requeued) == (1, 0)  # never requeued
    assert [headers[HANDLED_OUTCOME] for _, headers in bus.kept] == ["error"]

    refused = FlakyLog(NotFound("no conversation"), failures=99)
    consumer, bus = adapter(refused)
    await handle(consumer, message := FakeMessage(encode(turn(scope))))
    assert (refused.calls, bus.published, message.acked) == (1, [], 1)


def turn_end(scope: Scope, turn_id: str = "t1") -> EventsPosted:
    """The entry that ends a turn as the reasoner sends it: the last text, the end, the answer."""
    delta = MessageDelta(conversation_id=scope.conversation_id, turn_id=turn_id, text="hi")
    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id=turn_id, text="hi")
    return EventsPosted(
        scope=scope,
        turn_id=turn_id,
        events=[
            PostedEvent(event_id=f"{turn_id}:1:2", frame=delta),
            PostedEvent(event_id=f"{turn_id}:end", frame=done),
        ],
        checkpoint=TurnCheckpoint(messages=[ChatMessage(role="assistant", content="hi")]),
    )


async def test_a_dead_turn_end_fails_the_turn_as_poison(store: Store, scope: Scope) -> None:
    # The reasoner acked its turn once this entry was confirmed: if memory never sequences
    # it, nobody else will end the turn, and its client would wait for good.
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope))
    await store.begin_turn(scope, "t1")
    consumer, bus = adapter(log)
    await handle(consumer, message := FakeMessage(encode(turn_end(scope))))
    [(exchange, routing_key, body, _)] = bus.published
    failed = json.loads(body)
    assert (exchange, routing_key) == ("test.frames", scope.conversation_id)
    assert (failed["type"], failed["turn_id"], failed["seq"]) == ("turn.failed", "t1", 2)
    assert failed["error"]["code"] == "poison"
    assert (await store.turn_status(scope, "t1")).state == "failed"
    assert message.acked == 1 and bus.kept[0][1][HANDLED_OUTCOME] == "turn_failed"


async def test_a_dead_turn_end_of_a_turn_that_ended_changes_nothing(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope))
    await log.ingest(turn_end(scope))  # sequenced after all (a later publish kept failing)
    consumer, bus = adapter(log)
    await handle(consumer, FakeMessage(encode(turn_end(scope))))
    assert bus.published == [] and bus.kept[0][1][HANDLED_OUTCOME] == "already_ended"
    assert (await store.turn_status(scope, "t1")).state == "completed"


async def test_a_letter_whose_channel_closed_is_not_retried_the_broker_has_it_back(scope: Scope) -> None:
    """The connection was lost while ending its turn failed (the broker restarting): the
    broker requeued the letter and delivers it again; retrying this copy would keep it twice."""
    broken = FlakyLog(ConnectionError("broker gone"), failures=10**9)
    consumer, bus = adapter(broken, retry_window=60)
    message = FakeMessage(encode(turn(scope)))
    message.channel.is_closed = True
    await asyncio.wait_for(handle(consumer, message), 5)
    assert (broken.calls, message.acked, bus.kept) == (1, 0, [])


# ---- against the real RabbitMQ --------------------------------------------------------


class FlakyConversationLog(ConversationLog):
    """The real log on the real store, whose fail_dead_turn raises `failures` times first
    (MongoDB or the broker away for a while), then works."""

    def __init__(self, store: Store, topology: Topology, failures: int) -> None:
        super().__init__(store, topology)
        self.failures, self.calls = failures, 0
        self.called = asyncio.Event()

    async def fail_dead_turn(self, entry: TurnRequested) -> list[Outbound]:
        self.calls += 1
        self.called.set()
        if self.calls <= self.failures:
            raise ConnectionError("the store is away")
        return await super().fail_dead_turn(entry)


async def collect(bus: Bus, queue_name: str | None = None, *, frames_of: str | None = None) -> asyncio.Queue[Any]:
    """Consume (and ack) a queue, or a queue of our own bound to the frames of a
    conversation: the messages, or each frame decoded."""
    channel = await bus.channel(prefetch=100)
    queue: AbstractQueue
    if frames_of is not None:
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(bus.topology.frames_exchange, routing_key=frames_of)
    else:
        assert queue_name is not None
        queue = await channel.get_queue(queue_name)
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        if frames_of is None:
            got.put_nowait(message)
        else:
            for body in message.body.split(FANOUT_SEPARATOR):
                got.put_nowait(json.loads(body))

    await queue.consume(on_message)
    return got


async def test_a_dead_turn_whose_ending_fails_for_a_while_still_reaches_its_user(
    broker: Bus, store: Store, scope: Scope, caplog: Any
) -> None:
    # More failures than the quick attempts: once given up as `error`, the user never told.
    flaky = FlakyConversationLog(store, broker.topology, failures=8)
    consumer = DeadLetterConsumer(broker, flaky, retry_delay=0.001, retry_cap=0.01, retry_window=60)
    frames = await collect(broker, frames_of=scope.conversation_id)
    await consumer.start()
    try:
        await broker.publish(broker.topology.dead_letter_exchange, "#", encode(turn(scope)))
        seen = [await asyncio.wait_for(frames.get(), 10) for _ in range(2)]
        assert [f["type"] for f in seen] == ["message.accepted", "turn.failed"]
        assert seen[1]["turn_id"] == "t1" and seen[1]["error"]["code"] == "poison"
        kept = await collect(broker, broker.topology.handled_dead_letter_queue)
        letter = await asyncio.wait_for(kept.get(), 10)
        assert letter.headers[HANDLED_OUTCOME] == "turn_failed" and flaky.calls == 9
    finally:
        await asyncio.wait_for(consumer.stop(), 10)
    assert (await store.turn_status(scope, "t1")).state == "failed"
    # An error logged for each failure from the last quick attempt on.
    retrying = [r for r in caplog.records if r.getMessage() == "dead-lettered turn could not be failed yet; retrying"]
    assert [r.levelname for r in retrying] == ["ERROR"] * (8 - ATTEMPTS + 1)


async def test_stop_hands_a_letter_waiting_to_retry_back_to_the_dead_letter_queue(
    broker: Bus, store: Store, scope: Scope
) -> None:
    flaky = FlakyConversationLog(store, broker.topology, failures=10**9)
    # It keeps failing: without the interrupt, stop() would wait out the window (60 s).
    consumer = DeadLetterConsumer(broker, flaky, retry_delay=0.001, retry_cap=60, retry_window=60)
    await consumer.start()
    body = encode(turn(scope))
    await broker.publish(broker.topology.dead_letter_exchange, "#", body)
    while flaky.calls <= ATTEMPTS:  # past the quick attempts
        flaky.called.clear()
        await asyncio.wait_for(flaky.called.wait(), 10)

    await asyncio.wait_for(consumer.stop(), 5)  # far sooner than the window
    calls = flaky.calls
    # Back in <ns>.dead, as it came (no handled headers), for another replica or the next start.
    back = await asyncio.wait_for((await collect(broker, broker.topology.dead_letter_queue)).get(), 10)
    assert back.body == body and HANDLED_OUTCOME not in (back.headers or {})
    # A copy, not a requeue: no delivery counted against it (RabbitMQ 4 drops a letter past
    # its default delivery limit of 20, with nowhere else to send it).
    assert not back.redelivered and "x-delivery-count" not in (back.headers or {})
    channel = await broker.channel(prefetch=1)
    handled = await channel.declare_queue(broker.topology.handled_dead_letter_queue, passive=True)
    assert handled.declaration_result.message_count == 0  # not kept
    assert flaky.calls == calls  # and not tried again after the stop


async def test_a_dead_letter_of_a_user_erased_since_is_not_kept(broker: Bus, store: Store, scope: Scope) -> None:
    """Dead-lettered around the erasure (a turn accepted before it, a turn's end refused
    after it): nothing of the user is stored again, and once memory has kept the letters
    it takes them out of `<ns>.dead.handled` again; another user's stay."""
    log = ConversationLog(store, broker.topology)
    consumer = DeadLetterConsumer(broker, log, retry_delay=0.001)
    await log.ingest(turn(scope, "t1"))
    early = turn(scope, "t2")  # accepted by the gateway, not stored yet
    await store.erase_user("acme", "alice")
    bob = scope.model_copy(update={"user_id": "bob", "conversation_id": f"{scope.conversation_id}-bob"})
    end = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="your card ends in 4111")
    erased = [encode(early), encode(EventPosted(scope=scope, turn_id="t1", event_id="t1:9", frame=end))]
    before = _dead_letters()
    await consumer.start()
    try:
        for body in [*erased, encode(turn(bob, "b1"))]:
            await broker.publish(broker.topology.dead_letter_exchange, "#", body)
        await until(lambda: _dead_letters() == before + 3, "the three letters handled")
    finally:
        await asyncio.wait_for(consumer.stop(), 10)
    assert await store.list_conversations("acme", "alice", 10) == []
    channel = await broker.channel(prefetch=1)
    handled = await channel.declare_queue(broker.topology.handled_dead_letter_queue, passive=True)
    kept = [await handled.get(no_ack=True) for _ in range(handled.declaration_result.message_count or 0)]
    assert [json.loads(letter.body)["turn_id"] for letter in kept] == ["b1"]


def _dead_letters() -> float:
    """How many dead letters memory has handled, whatever the outcome."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "agentry_memory_dead_letters"
        for sample in metric.samples
        if sample.name == "agentry_memory_dead_letters_total"
    )
