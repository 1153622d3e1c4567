"""The service's wiring against the real RabbitMQ, in-process, in a namespace of its own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentry_shared.bus import encode
from agentry_shared.contracts.events import EventPosted
from agentry_shared.contracts.frames import TurnCompleted
from agentry_shared.contracts.memory import (
    ClaimConversation,
    Claimed,
    Context,
    Frames,
    GetContext,
    GetFrames,
    MemoryFailure,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import MemoryFactory


async def test_a_turn_and_an_event_through_the_broker(start_memory: MemoryFactory) -> None:
    memory = await start_memory()
    topology = memory.topology
    scope = Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
    partition = topology.partition(scope.conversation_id)
    frames = await memory.listen(topology.frames_exchange, scope.conversation_id)
    turns = await memory.consume_queue(topology.turns_queue(partition))  # memory declared it

    assert await memory.rpc(ClaimConversation(scope=scope)) == Claimed(created=True)
    turn = TurnRequested(scope=scope, turn_id="t1", text="hello", client_message_id="m1", accepted_at=datetime.now(UTC))
    await memory.client.publish(topology.log_exchange, str(partition), encode(turn))

    accepted = await memory.next_json(frames)
    assert accepted["type"] == "message.accepted"
    assert (accepted["seq"], accepted["id"], accepted["turn_id"]) == (1, "m1", "t1")
    assert await asyncio.wait_for(turns.get(), 10) == encode(turn)  # byte for byte

    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="hi there")
    event = EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done)
    await memory.client.publish(topology.log_exchange, str(partition), encode(event))
    completed = await memory.next_json(frames)
    assert (completed["type"], completed["seq"]) == ("turn.completed", 2)

    replay = await memory.rpc(GetFrames(scope=scope, after_seq=0))
    assert isinstance(replay, Frames) and replay.frames == [accepted, completed]
    context = await memory.rpc(GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context) and [m.content for m in context.messages] == ["hello"]
    stranger = scope.model_copy(update={"user_id": "mallory"})
    refused = await memory.rpc(GetFrames(scope=stranger))
    assert isinstance(refused, MemoryFailure) and refused.code == "forbidden"
