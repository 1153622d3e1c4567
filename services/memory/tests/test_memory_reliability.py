"""Cancel broadcasts, dead letters and a lost broker connection, against the real RabbitMQ.

The broker is shared, so nothing here restarts it: a connection loss is made by a TCP
relay of our own between the service and the broker (`CuttableProxy`), which drops every
connection through it and refuses new ones for a while, as a broker restart would.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from agentry_shared.bus import encode
from agentry_shared.contracts.control import CONTROL_MESSAGE, CancelRequested
from agentry_shared.contracts.memory import (
    BeginTurn,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    Frames,
    GetFrames,
    TurnBegun,
    TurnCancelAccepted,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.testing import CuttableProxy
from aio_pika.abc import AbstractIncomingMessage

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import MemoryFactory, MemoryUnderTest


def new_scope() -> Scope:
    return Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")


def turn(scope: Scope, turn_id: str) -> TurnRequested:
    return TurnRequested(scope=scope, turn_id=turn_id, text="hi", client_message_id="m", accepted_at=datetime.now(UTC))


async def send_turn(memory: MemoryUnderTest, scope: Scope, turn_id: str) -> None:
    partition = memory.topology.partition(scope.conversation_id)
    await memory.client.publish(memory.topology.log_exchange, str(partition), encode(turn(scope, turn_id)))


async def frames_until_failed(memory: MemoryUnderTest, frames: asyncio.Queue[bytes]) -> dict[int, dict[str, Any]]:
    """Frames by seq, first copy kept (as a gateway does), up to the turn.failed."""
    seen: dict[int, dict[str, Any]] = {}
    while not seen or list(seen.values())[-1]["type"] != "turn.failed":
        frame = await memory.next_json(frames)
        seen.setdefault(frame["seq"], frame)
    return seen


async def test_a_cancel_is_broadcast_on_the_control_exchange(start_memory: MemoryFactory) -> None:
    memory = await start_memory()
    scope, turn_id = new_scope(), f"turn-{uuid.uuid4().hex}"
    control = await memory.listen(memory.topology.control_exchange, "")
    frames = await memory.listen(memory.topology.frames_exchange, scope.conversation_id)
    await send_turn(memory, scope, turn_id)
    assert (await memory.next_json(frames))["type"] == "message.accepted"

    cancel = CancelTurnRequest(tenant_id=scope.tenant_id, user_id=scope.user_id, turn_id=turn_id)
    # Memory began the turn as it forwarded it (nothing earlier was unfinished): running.
    assert await memory.rpc(cancel) == TurnCancelAccepted(conversation_id=scope.conversation_id, state="running")
    heard = CONTROL_MESSAGE.validate_python(await memory.next_json(control))
    assert heard == CancelRequested(conversation_id=scope.conversation_id, turn_id=turn_id)
    assert await memory.rpc(BeginTurn(scope=scope, turn_id=turn_id)) == TurnBegun(attempt=2, state="cancelled")


async def test_a_turn_rejected_by_its_reasoner_fails_as_poison(start_memory: MemoryFactory) -> None:
    memory = await start_memory()
    scope, turn_id = new_scope(), f"turn-{uuid.uuid4().hex}"
    frames = await memory.listen(memory.topology.frames_exchange, scope.conversation_id)

    # Play a reasoner that gives up on the turn: rejected without requeue, it is dead-lettered.
    channel = await memory.client.channel(prefetch=1)
    turns = await channel.get_queue(memory.topology.turns_queue(memory.topology.partition(scope.conversation_id)))

    async def reject(message: AbstractIncomingMessage) -> None:
        await message.reject(requeue=False)

    await turns.consume(reject)
    await send_turn(memory, scope, turn_id)

    seen = await frames_until_failed(memory, frames)  # accepted comes twice: gateways drop the seq seen
    assert [(f["type"], f["seq"]) for f in seen.values()] == [("message.accepted", 1), ("turn.failed", 2)]
    assert seen[2]["turn_id"] == turn_id and seen[2]["error"]["code"] == "poison"
    # attempt 2: memory counted the first as it forwarded the turn begun.
    assert await memory.rpc(BeginTurn(scope=scope, turn_id=turn_id)) == TurnBegun(attempt=2, state="failed")


async def test_a_dead_turn_memory_never_saw_is_accepted_then_failed(start_memory: MemoryFactory) -> None:
    memory = await start_memory()
    scope, turn_id = new_scope(), f"turn-{uuid.uuid4().hex}"
    frames = await memory.listen(memory.topology.frames_exchange, scope.conversation_id)
    # As if it had died in the log queue before it was ever ingested.
    await memory.client.publish(memory.topology.dead_letter_exchange, "#", encode(turn(scope, turn_id)))
    seen = await frames_until_failed(memory, frames)
    assert [(f["type"], f["seq"]) for f in seen.values()] == [("message.accepted", 1), ("turn.failed", 2)]
    assert seen[2]["error"]["code"] == "poison"


@pytest.fixture
async def proxy() -> AsyncIterator[CuttableProxy]:
    """Requested before `start_memory`, so the service stops before the relay closes."""
    relay = CuttableProxy(("127.0.0.1", urlsplit(os.environ.get("AMQP_URL", "amqp://127.0.0.1:5672/")).port or 5672))
    await relay.start()
    yield relay
    await relay.close()


async def next_new(memory: MemoryUnderTest, frames: asyncio.Queue[bytes], seen: set[int]) -> dict[str, Any]:
    """The next frame with a seq not seen yet: an entry in hand when the connection went is
    redelivered, and publishes its frames again (gateways drop them the same way)."""
    while True:
        frame: dict[str, Any] = await memory.next_json(frames, timeout=30)
        if frame["seq"] not in seen:
            seen.add(frame["seq"])
            return frame


async def test_consumers_and_rpc_come_back_after_the_broker_connection_is_lost(
    proxy: CuttableProxy, start_memory: MemoryFactory
) -> None:
    memory = await start_memory(f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.5")
    scope, seen = new_scope(), set[int]()
    frames = await memory.listen(memory.topology.frames_exchange, scope.conversation_id)
    await send_turn(memory, scope, "before")
    assert (await next_new(memory, frames, seen))["turn_id"] == "before"

    proxy.cut()
    await memory.readiness_becomes(503)  # "broker reconnecting"
    # While it is away, a turn waits in its log queue and a request in its RPC queue.
    await send_turn(memory, scope, "during")
    claim = asyncio.create_task(memory.rpc(ClaimConversation(scope=scope, new=True), timeout=30))
    await asyncio.sleep(1.5)  # a few refused reconnect attempts
    assert not claim.done()
    proxy.mend()

    await memory.readiness_becomes(200, timeout=30)
    during = await next_new(memory, frames, seen)
    assert (during["turn_id"], during["seq"]) == ("during", 2)
    assert await claim == Claimed(created=False)
    await send_turn(memory, scope, "after")
    assert (await next_new(memory, frames, seen))["seq"] == 3
    replay = await memory.rpc(GetFrames(scope=scope))
    assert isinstance(replay, Frames) and [f["turn_id"] for f in replay.frames] == ["before", "during", "after"]
