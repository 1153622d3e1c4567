"""The turn consumer on the real broker, with memory played by the test on its RPC queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from agentry_reasoner.agent import FrameIds
from agentry_reasoner.broker_ports import BrokerEvents, HandedBack
from agentry_reasoner.handlers import TurnConsumer
from agentry_reasoner.model import TextDelta, ToolCall, ToolCallsRequested
from agentry_reasoner.testing import ScriptedModel
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.events import LOG_ENTRY, EventPosted, EventsPosted
from agentry_shared.contracts.frames import (
    MessageDelta,
    ServerFrame,
    ThinkingStarted,
    ToolFinished,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)
from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    AppendMessages,
    BeginTurn,
    Context,
    Done,
    MemoryFailure,
    TakeToolToken,
    TurnBegun,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import Catalog, ToolDescriptor
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.settings import ReasonerSettings
from agentry_shared.testing import until
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class SlowMemory:
    """Answers BeginTurn only when `release` is set, so the test can act while the
    reasoner waits on memory; anything else is refused (the turn must not get further)."""

    def __init__(self) -> None:
        self.begun = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, body: bytes) -> bytes:
        request = MEMORY_REQUEST.validate_json(body)
        if isinstance(request, BeginTurn):
            self.begun.set()
            await self.release.wait()
            return encode(TurnBegun(attempt=1, state="running"))
        return encode(MemoryFailure(code="internal", message=f"not played: {request.kind}"))


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    topology = Topology(f"t{uuid.uuid4().hex[:12]}", 1)
    bus = Bus(AMQP_URL, topology, name="test")
    await bus.connect()
    try:
        yield bus
    finally:
        async with await aio_pika.connect(AMQP_URL) as connection:
            for name in [*topology.durable_queues(pools=[]), topology.memory_rpc_queue]:
                ch = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await ch.queue_delete(name)
            ch = await connection.channel()
            for name in topology.exchanges():
                await ch.exchange_delete(name)
        await bus.close()


async def frames_on_the_log(bus: Bus) -> asyncio.Queue[ServerFrame]:
    """Plays memory's side of partition 0 of the log: every frame the reasoner posts, in order."""
    topology = bus.topology
    channel = await bus.channel(prefetch=100)
    log_queue = await bus.declare_work_queue(
        channel, topology.log_queue(0), topology.log_exchange, "0", single_active=True
    )
    frames: asyncio.Queue[ServerFrame] = asyncio.Queue()

    async def on_log(message: AbstractIncomingMessage) -> None:
        entry = LOG_ENTRY.validate_json(message.body)
        assert isinstance(entry, EventPosted | EventsPosted)
        for posted in entry.events if isinstance(entry, EventsPosted) else [entry]:
            frames.put_nowait(posted.frame)
        await message.ack()

    await log_queue.consume(on_log)
    return frames


async def test_a_cancel_while_the_turn_begins_ends_it_cancelled(bus: Bus) -> None:
    """Before: the cancel arrived while the reasoner asked memory to begin the turn; its task
    was cancelled there, left the delivery unsettled, and the turn never ended (the client
    waited for ever and the partition stalled behind it)."""
    topology = bus.topology
    memory = SlowMemory()
    rpc = await bus.serve_rpc(topology.memory_rpc, memory.handle)
    frames = await frames_on_the_log(bus)
    settings = ReasonerSettings(
        agentry_namespace=topology.namespace, agentry_partitions=1, agentry_heartbeat_seconds=0.2
    )
    consumer = TurnConsumer(bus, ScriptedModel([]), settings)
    await consumer.start()
    try:
        scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
        turn = TurnRequested(scope=scope, turn_id=f"turn-{uuid.uuid4().hex}", text="hi", accepted_at=datetime.now(UTC))
        await bus.publish(topology.turns_exchange, "0", encode(turn))
        await asyncio.wait_for(memory.begun.wait(), 10)
        cancel = CancelRequested(conversation_id=scope.conversation_id, turn_id=turn.turn_id)
        await bus.publish(topology.control_exchange, "", encode(cancel), persistent=False)
        # The broadcast reaches the reasoner while memory holds BeginTurn.
        await until(lambda: turn.turn_id in consumer._recent_cancels, "the reasoner heard the cancel")
        memory.release.set()

        frame = await asyncio.wait_for(frames.get(), 10)
        assert isinstance(frame, TurnFailed), frame
        assert frame.error.code == "cancelled"
    finally:
        await consumer.stop(1.0)
        await rpc.cancel()


async def test_frames_go_out_in_order_batched_while_an_entry_is_in_flight(bus: Bus) -> None:
    """emit does not wait for the broker: what is emitted while one entry waits for its
    confirm goes in the next entry, in order; flush returns once all are confirmed."""
    inbox = await _log_inbox(bus)
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    events = BrokerEvents(bus, scope, "t1", 1, None)
    for i in range(20):
        await events.emit(MessageDelta(conversation_id=scope.conversation_id, turn_id="t1", text=str(i)))
        if i == 0:
            await asyncio.sleep(0)  # the sender takes the first frame alone
    await events.flush()
    await events.close()  # as the consumer does before the ack: what flush left unconfirmed is lost
    posted: list[tuple[str, object]] = []
    entries = 0
    while len(posted) < 20:
        entry = await asyncio.wait_for(inbox.get(), 5)
        entries += 1
        batch = entry.events if isinstance(entry, EventsPosted) else [entry]
        posted += [(e.event_id, e.frame) for e in batch]
    assert [frame.text for _, frame in posted if isinstance(frame, MessageDelta)] == [str(i) for i in range(20)]
    assert [event_id for event_id, _ in posted] == [f"t1:1:{i}" for i in range(1, 21)]
    assert 1 < entries < 20  # the first alone, the rest batched behind its confirm
    await asyncio.sleep(0.3)
    assert inbox.empty()


async def test_frames_of_a_turn_handed_back_are_not_published(bus: Bus) -> None:
    ours = True
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    events = BrokerEvents(bus, scope, "t1", 1, None, still_ours=lambda: ours)
    # Not answer text: that would go to the broker within its emit.
    await events.emit(ThinkingStarted(conversation_id=scope.conversation_id, turn_id="t1", step=0))
    ours = False  # the connection dropped before the sender ran
    with pytest.raises(HandedBack):
        await events.flush()
    with pytest.raises(HandedBack):
        await events.emit(MessageDelta(conversation_id=scope.conversation_id, turn_id="t1", text="y"))


async def test_progress_frames_wait_for_company_and_answer_text_takes_them_along(bus: Bus) -> None:
    inbox = await _log_inbox(bus)
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    ids = FrameIds(conversation_id=scope.conversation_id, turn_id="t1")
    events = BrokerEvents(bus, scope, "t1", 1, None, linger_s=30.0)
    await events.emit(TurnStarted(**ids))
    await events.emit(ThinkingStarted(step=0, **ids))
    await asyncio.sleep(0.3)
    assert inbox.empty()  # lingering
    await events.emit(MessageDelta(text="hi", **ids))
    entry = await asyncio.wait_for(inbox.get(), 5)  # the answer text took them along, at once
    assert isinstance(entry, EventsPosted)
    assert [e.frame.type for e in entry.events] == ["turn.started", "thinking.started", "message.delta"]
    await events.emit(ThinkingStarted(step=1, **ids))
    await asyncio.wait_for(events.flush(), 5)  # flush does not linger either
    entry = await asyncio.wait_for(inbox.get(), 5)
    assert isinstance(entry, EventPosted) and entry.frame.type == "thinking.started"


async def test_the_last_text_of_a_stream_shares_the_entry_of_the_turns_end(bus: Bus) -> None:
    """The end of an answer and the turn's end are one log entry (one commit in memory, one
    delivery to the gateway), not two a moment apart."""
    inbox = await _log_inbox(bus)
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    ids = FrameIds(conversation_id=scope.conversation_id, turn_id="t1")
    events = BrokerEvents(bus, scope, "t1", 1, None, linger_s=30.0)
    await events.emit(MessageDelta(text="the answer ", **ids))
    first = await asyncio.wait_for(inbox.get(), 5)  # answer text goes at once ...
    assert isinstance(first, EventPosted) and first.frame.type == "message.delta"
    await events.emit(MessageDelta(text="ends here", **ids), hold=True)
    await asyncio.sleep(0.3)
    assert inbox.empty()  # ... but the stream's last piece waits for what follows it
    await events.emit(TurnCompleted(text="the answer ends here", **ids))
    entry = await asyncio.wait_for(inbox.get(), 5)
    assert isinstance(entry, EventsPosted)
    assert [e.frame.type for e in entry.events] == ["message.delta", "turn.completed"]
    await asyncio.wait_for(events.flush(), 5)
    await events.close()


async def _log_inbox(bus: Bus) -> asyncio.Queue[EventPosted | EventsPosted]:
    """The log entries published to partition 0, as memory would read them."""
    channel = await bus.channel(prefetch=100)
    log_queue = await bus.declare_work_queue(
        channel, bus.topology.log_queue(0), bus.topology.log_exchange, "0", single_active=True
    )
    inbox: asyncio.Queue[EventPosted | EventsPosted] = asyncio.Queue()

    async def on_log(message: AbstractIncomingMessage) -> None:
        entry = LOG_ENTRY.validate_json(message.body)
        assert isinstance(entry, EventPosted | EventsPosted)
        inbox.put_nowait(entry)
        await message.ack()

    await log_queue.consume(on_log)
    return inbox


async def test_answer_text_goes_to_the_broker_before_the_model_stream_is_read_on(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model stream that is already buffered never yields to the event loop: the first
    delta must be handed to the broker within its `emit`, not after the whole answer."""
    published: list[bytes] = []
    publish = bus.publish

    async def recording(exchange: str, routing_key: str, body: bytes, **kwargs: Any) -> None:
        published.append(body)
        await publish(exchange, routing_key, body, **kwargs)

    monkeypatch.setattr(bus, "publish", recording)
    channel = await bus.channel(prefetch=1)
    await bus.declare_work_queue(channel, bus.topology.log_queue(0), bus.topology.log_exchange, "0", single_active=True)
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    ids = FrameIds(conversation_id=scope.conversation_id, turn_id="t1")
    events = BrokerEvents(bus, scope, "t1", 1, None, linger_s=30.0)
    await events.emit(TurnStarted(**ids))  # the sender lingers for company
    assert published == []
    await events.emit(MessageDelta(text="first", **ids))
    # No other await in between: this is where the agent loop reads the next chunk.
    assert len(published) == 1
    entry = LOG_ENTRY.validate_json(published[0])
    assert isinstance(entry, EventsPosted)
    assert [e.frame.type for e in entry.events] == ["turn.started", "message.delta"]
    await asyncio.wait_for(events.flush(), 5)
    await events.close()


class RecordingMemory:
    """Answers BeginTurn (attempt 2: memory counted the first as it forwarded the turn) as
    `state`, with the turn's context; records the kinds asked."""

    def __init__(self, state: str = "running") -> None:
        self.asked: list[str] = []
        self.state = state

    async def handle(self, body: bytes) -> bytes:
        request = MEMORY_REQUEST.validate_json(body)
        self.asked.append(request.kind)
        if isinstance(request, BeginTurn):
            context = Context(messages=[ChatMessage(role="user", content="hi")])
            return encode(TurnBegun(attempt=2, state=self.state, context=context))  # type: ignore[arg-type]
        return encode(MemoryFailure(code="internal", message=f"not played: {request.kind}"))


@pytest.mark.parametrize("case", ["fresh", "cancel heard first", "begun before we listened"])
async def test_a_turn_forwarded_begun_skips_begin_turn_only_when_nothing_could_have_been_missed(
    bus: Bus, case: str
) -> None:
    """Memory begins a turn as it forwards it (attempt 1, with its context). The reasoner
    uses that begin as is, unless it may have missed the turn's cancel: then it asks memory,
    whose record of the cancel is the truth."""
    topology = bus.topology
    memory = RecordingMemory(state="cancelled" if case == "cancel heard first" else "running")
    rpc = await bus.serve_rpc(topology.memory_rpc, memory.handle)
    catalog = await bus.serve_rpc(topology.tool_catalog, lambda _: _no_tools())
    frames = await frames_on_the_log(bus)
    settings = ReasonerSettings(
        agentry_namespace=topology.namespace, agentry_partitions=1, agentry_heartbeat_seconds=0.2
    )
    before_start = time.time() - 5
    consumer = TurnConsumer(bus, ScriptedModel([TextDelta("hello")]), settings)
    await consumer.start()
    try:
        scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
        turn_id = f"turn-{uuid.uuid4().hex}"
        hi = Context(messages=[ChatMessage(role="user", content="hi")])
        begun = TurnBegun(attempt=1, state="running", context=hi)
        # "fresh": begun after this reasoner started listening (past the clock-skew margin)
        begun_at = before_start if case == "begun before we listened" else time.time() + 1
        turn = TurnRequested(
            scope=scope, turn_id=turn_id, text="hi", accepted_at=datetime.now(UTC), begun=begun, begun_at=begun_at
        )
        if case == "cancel heard first":
            cancel = CancelRequested(conversation_id=scope.conversation_id, turn_id=turn_id)
            await bus.publish(topology.control_exchange, "", encode(cancel), persistent=False)
            await until(lambda: turn_id in consumer._recent_cancels, "the reasoner heard the cancel")
        await bus.publish(topology.turns_exchange, "0", encode(turn))
        seen: list[str] = []
        while not seen or seen[-1] not in ("turn.completed", "turn.failed"):
            seen.append((await asyncio.wait_for(frames.get(), 10)).type)
    finally:
        await consumer.stop(1.0)
        await rpc.cancel()
        await catalog.cancel()
    if case == "fresh":
        assert memory.asked == []  # no BeginTurn round trip, and the answer rides the log
        assert seen == ["turn.started", "message.delta", "turn.completed"]
    elif case == "cancel heard first":
        assert memory.asked == ["memory.begin_turn"]
        assert seen[-1] == "turn.failed"
    else:
        assert memory.asked == ["memory.begin_turn"]
        assert seen == ["turn.started", "message.reset", "message.delta", "turn.completed"]  # attempt 2


async def _no_tools() -> bytes:
    return encode(Catalog(tools=[]))


class CheckpointHeldMemory:
    """Begins the turn and stores its first checkpoint; holds every later one until
    `release` is set (the turn's failure checkpoints while the test acts)."""

    def __init__(self) -> None:
        self.appends = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, body: bytes) -> bytes:
        request = MEMORY_REQUEST.validate_json(body)
        if isinstance(request, BeginTurn):
            context = Context(messages=[ChatMessage(role="user", content="what is 1+1?")])
            return encode(TurnBegun(attempt=2, state="running", context=context))
        if isinstance(request, AppendMessages):
            self.appends += 1
            if self.appends > 1:
                self.holding.set()
                await self.release.wait()
            return encode(Done())
        if isinstance(request, TakeToolToken):
            return encode(MemoryFailure(code="unsupported", message="no rate limits here"))
        return encode(MemoryFailure(code="internal", message=f"not played: {request.kind}"))


async def test_a_second_cancel_while_the_first_ends_the_turn_still_ends_it_once(bus: Bus) -> None:
    """Before: a user who pressed cancel twice (memory broadcasts each while the turn runs)
    cancelled the turn's task again while it was ending `cancelled`; the ending was cut
    short, no `turn.failed` went out and the delivery was never settled: the client waited
    for ever and the turn stayed `running` in memory."""
    topology = bus.topology
    memory = CheckpointHeldMemory()
    rpc = await bus.serve_rpc(topology.memory_rpc, memory.handle)
    calculator = ToolDescriptor(name="calculator", description="math", parameters={"type": "object"})
    catalog = await bus.serve_rpc(topology.tool_catalog, lambda _: _tools(calculator))
    frames = await frames_on_the_log(bus)  # the tool's pool is never served: the call runs until cancelled
    settings = ReasonerSettings(
        agentry_namespace=topology.namespace, agentry_partitions=1, agentry_heartbeat_seconds=0.2
    )
    model = ScriptedModel([ToolCallsRequested([ToolCall("c1", "calculator", '{"expression": "1+1"}')])])
    consumer = TurnConsumer(bus, model, settings)
    heard: list[str] = []
    on_control = consumer._on_control

    async def counting(message: AbstractIncomingMessage) -> None:
        await on_control(message)
        heard.append("cancel")

    consumer._on_control = counting  # type: ignore[method-assign]
    await consumer.start()
    try:
        scope, turn, seen = await a_turn_until_its_tool_starts(bus, frames)
        cancel = encode(CancelRequested(conversation_id=scope.conversation_id, turn_id=turn.turn_id))
        await bus.publish(topology.control_exchange, "", cancel, persistent=False)
        await asyncio.wait_for(memory.holding.wait(), 10)  # ending `cancelled`: its checkpoint
        await bus.publish(topology.control_exchange, "", cancel, persistent=False)
        await until(lambda: len(heard) == 2, "the reasoner heard the second cancel")
        memory.release.set()
        while seen[-1].type not in ("turn.completed", "turn.failed"):
            seen.append(await asyncio.wait_for(frames.get(), 10))
        assert isinstance(seen[-1], TurnFailed) and seen[-1].error.code == "cancelled"
        await until(lambda: not consumer._running, "the turn's delivery was settled")
        await asyncio.sleep(0.3)
        assert frames.empty()  # ended once
    finally:
        await consumer.stop(1.0)
        await rpc.cancel()
        await catalog.cancel()


async def a_turn_until_its_tool_starts(
    bus: Bus, frames: asyncio.Queue[ServerFrame]
) -> tuple[Scope, TurnRequested, list[ServerFrame]]:
    """Publish a turn of a new conversation; its frames up to its `tool.started`."""
    scope = Scope(tenant_id="t", user_id="u", conversation_id=f"c-{uuid.uuid4().hex}")
    turn = TurnRequested(scope=scope, turn_id=f"turn-{uuid.uuid4().hex}", text="hi", accepted_at=datetime.now(UTC))
    await bus.publish(bus.topology.turns_exchange, "0", encode(turn))
    seen: list[ServerFrame] = []
    while not seen or seen[-1].type != "tool.started":
        seen.append(await asyncio.wait_for(frames.get(), 10))
    return scope, turn, seen


async def _tools(*tools: ToolDescriptor) -> bytes:
    return encode(Catalog(tools=list(tools)))


@pytest.mark.parametrize("ending", ["cancel", "deadline"])
async def test_a_call_running_when_the_turn_ends_is_ended_once_before_the_turn(bus: Bus, ending: str) -> None:
    """Before: the client got `tool.started` and then only `turn.failed`: a chip per call
    (the web page, the terminal client, /v1 progress) showed the call running for good."""
    topology = bus.topology
    memory = CheckpointHeldMemory()
    memory.release.set()
    rpc = await bus.serve_rpc(topology.memory_rpc, memory.handle)
    calculator = ToolDescriptor(name="calculator", description="math", parameters={"type": "object"})
    catalog = await bus.serve_rpc(topology.tool_catalog, lambda _: _tools(calculator))
    frames = await frames_on_the_log(bus)  # the tool's pool is never served: the call runs until the end
    settings = ReasonerSettings(
        agentry_namespace=topology.namespace,
        agentry_partitions=1,
        agentry_heartbeat_seconds=0.2,
        reasoner_turn_deadline_seconds=3 if ending == "deadline" else 300,
    )
    model = ScriptedModel([ToolCallsRequested([ToolCall("c1", "calculator", '{"expression": "1+1"}')])])
    consumer = TurnConsumer(bus, model, settings)
    await consumer.start()
    try:
        scope, turn, seen = await a_turn_until_its_tool_starts(bus, frames)
        if ending == "cancel":
            cancel = encode(CancelRequested(conversation_id=scope.conversation_id, turn_id=turn.turn_id))
            await bus.publish(topology.control_exchange, "", cancel, persistent=False)
        while seen[-1].type not in ("turn.completed", "turn.failed"):
            seen.append(await asyncio.wait_for(frames.get(), 10))
        await until(lambda: not consumer._running, "the turn's delivery was settled")
    finally:
        await consumer.stop(1.0)
        await rpc.cancel()
        await catalog.cancel()
    ends = [f for f in seen if isinstance(f, ToolFinished)]
    assert [(f.call_id, f.ok, f.error) for f in ends] == [
        ("c1", False, "cancelled" if ending == "cancel" else "interrupted")
    ]
    assert [f.type for f in seen[-2:]] == ["tool.finished", "turn.failed"]
    assert isinstance(seen[-1], TurnFailed)
    assert seen[-1].error.code == ("cancelled" if ending == "cancel" else "deadline_exceeded")
