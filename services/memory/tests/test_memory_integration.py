"""The service's wiring against the real RabbitMQ, in-process, in a namespace of its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentry_memory.settings import service_settings
from agentry_shared.bus import encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.events import EventPosted
from agentry_shared.contracts.frames import TurnCompleted
from agentry_shared.contracts.memory import (
    BeginTurn,
    ClaimConversation,
    Claimed,
    Context,
    Frames,
    GetContext,
    GetFrames,
    MemoryFailure,
    TurnBegun,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import MemoryFactory


async def test_50_concurrent_turns_each_published_twice_are_kept_once_in_log_order(
    start_memory: MemoryFactory,
) -> None:
    memory = await start_memory()
    topology = memory.topology
    scope = Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
    key = str(topology.partition(scope.conversation_id))
    turns = [
        TurnRequested(
            scope=scope,
            turn_id=f"t{i:02}",
            text=f"m{i:02}",
            client_message_id=f"m{i:02}",
            accepted_at=datetime.now(UTC),
        )
        for i in range(50)
    ]
    # Gateways publish at once, and a publisher that saw no confirm publishes again.
    await asyncio.gather(*(memory.client.publish(topology.log_exchange, key, encode(t)) for t in turns + turns))
    # A turn of another conversation, queued behind all 100 in the same partition: the log
    # handles a partition one entry at a time, in order, so once it is sequenced every copy
    # before it has been handled (a guessed pause would let late duplicates go unchecked).
    marker = scope
    while marker == scope or topology.partition(marker.conversation_id) != int(key):
        marker = scope.model_copy(update={"conversation_id": f"c-{uuid.uuid4().hex}"})
    marked = await memory.listen(topology.frames_exchange, marker.conversation_id)
    behind = TurnRequested(scope=marker, turn_id="marker", text="last", accepted_at=datetime.now(UTC))
    await memory.client.publish(topology.log_exchange, key, encode(behind))
    assert (await memory.next_json(marked, timeout=30))["type"] == "message.accepted"
    reply = await memory.rpc(GetFrames(scope=scope, after_seq=0))
    assert isinstance(reply, Frames)
    frames = reply.frames
    assert [f["seq"] for f in frames] == list(range(1, 51))  # no gap, no duplicate
    order = [str(f["id"]) for f in frames]
    assert sorted(order) == [t.text for t in turns]  # every message, once
    last = order[-1].replace("m", "t")
    context = await memory.rpc(GetContext(scope=scope, turn_id=last))
    assert isinstance(context, Context)
    window = service_settings(memory.settings).memory_window_messages
    assert [m.content for m in context.messages] == order[-window:]  # the conversation's order is the log's


async def test_a_turn_and_an_event_through_the_broker(start_memory: MemoryFactory) -> None:
    memory = await start_memory()
    topology = memory.topology
    scope = Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
    partition = topology.partition(scope.conversation_id)
    frames = await memory.listen(topology.frames_exchange, scope.conversation_id)
    turns = await memory.consume_queue(topology.turns_queue(partition))  # memory declared it

    assert await memory.rpc(ClaimConversation(scope=scope, new=True)) == Claimed(created=True)
    turn = TurnRequested(scope=scope, turn_id="t1", text="hello", client_message_id="m1", accepted_at=datetime.now(UTC))
    await memory.client.publish(topology.log_exchange, str(partition), encode(turn))

    accepted = await memory.next_json(frames)
    assert accepted["type"] == "message.accepted"
    assert (accepted["seq"], accepted["id"], accepted["turn_id"]) == (1, "m1", "t1")
    # Nothing before it is unfinished: forwarded begun (attempt 1) with its context.
    forwarded = TurnRequested.model_validate_json(await asyncio.wait_for(turns.get(), 10))
    assert forwarded.model_copy(update={"begun": None, "begun_at": None}) == turn
    hello = ChatMessage(role="user", content="hello")
    assert forwarded.begun == TurnBegun(attempt=1, state="running", context=Context(messages=[hello]))
    assert forwarded.begun_at is not None and abs(forwarded.begun_at - time.time()) < 60
    status = await memory.rpc(BeginTurn(scope=scope, turn_id="t1"))  # the reasoner died: taken again
    assert status == TurnBegun(attempt=2, state="running")

    # While t1 runs, t2 must wait for its answer: forwarded as it came, byte for byte.
    second = turn.model_copy(update={"turn_id": "t2", "text": "and?", "client_message_id": "m2"})
    await memory.client.publish(topology.log_exchange, str(partition), encode(second))
    assert (await memory.next_json(frames))["id"] == "m2"
    assert await asyncio.wait_for(turns.get(), 10) == encode(second)

    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="hi there")
    event = EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done)
    await memory.client.publish(topology.log_exchange, str(partition), encode(event))
    completed = await memory.next_json(frames)
    assert (completed["type"], completed["seq"]) == ("turn.completed", 3)

    replay = await memory.rpc(GetFrames(scope=scope, after_seq=0))
    assert isinstance(replay, Frames) and [f["type"] for f in replay.frames] == ["message.accepted"] * 2 + [
        "turn.completed"
    ]
    assert replay.frames[0] == accepted and replay.frames[2] == completed
    context = await memory.rpc(GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context) and [m.content for m in context.messages] == ["hello"]
    stranger = scope.model_copy(update={"user_id": "mallory"})
    refused = await memory.rpc(GetFrames(scope=stranger))
    assert isinstance(refused, MemoryFailure) and refused.code == "forbidden"
