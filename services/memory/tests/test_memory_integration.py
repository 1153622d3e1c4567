"""The service's wiring against the real RabbitMQ, in-process, in a namespace of its own."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from agentry_memory.main import service
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.events import EventPosted
from agentry_shared.contracts.frames import TurnCompleted
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
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
from agentry_shared.settings import MemorySettings
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("memory never became ready")


async def inbox(queue: AbstractQueue) -> asyncio.Queue[bytes]:
    """Consume into a local queue (quorum queues with single active consumer refuse basic.get)."""
    bodies: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        bodies.put_nowait(message.body)

    await queue.consume(on_message)
    return bodies


async def next_body(bodies: asyncio.Queue[bytes], timeout: float = 10.0) -> bytes:
    return await asyncio.wait_for(bodies.get(), timeout)


async def rpc(client: Bus, request: Any) -> Any:
    return MEMORY_REPLY.validate_json(await client.request(client.topology.memory_rpc_queue, encode(request)))


async def test_a_turn_and_an_event_through_the_broker(tmp_path: Path) -> None:
    topology = Topology(f"t{uuid.uuid4().hex}", 2)
    settings = MemorySettings(
        agentry_namespace=topology.namespace,
        agentry_partitions=topology.partitions,
        memory_data_dir=tmp_path,
        memory_port=free_port(),
        shutdown_grace_seconds=5,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(service(stop, settings))
    client = Bus(settings.amqp_url.get_secret_value(), topology, name="memory-test")
    scope = Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
    partition = topology.partition(scope.conversation_id)
    try:
        await wait_ready(settings.memory_port)
        await client.connect()
        channel = await client.channel(prefetch=10)
        frames_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await frames_queue.bind(topology.frames_exchange, routing_key=scope.conversation_id)
        frames = await inbox(frames_queue)
        turns = await inbox(await channel.get_queue(topology.turns_queue(partition)))  # memory declared it

        assert await rpc(client, ClaimConversation(scope=scope)) == Claimed(created=True)
        turn = TurnRequested(
            scope=scope, turn_id="t1", text="hello", client_message_id="m1", accepted_at=datetime.now(UTC)
        )
        await client.publish(topology.log_exchange, str(partition), encode(turn))

        accepted = json.loads(await next_body(frames))
        assert accepted["type"] == "message.accepted"
        assert (accepted["seq"], accepted["id"], accepted["turn_id"]) == (1, "m1", "t1")
        assert await next_body(turns) == encode(turn)

        done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="hi there")
        event = EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done)
        await client.publish(topology.log_exchange, str(partition), encode(event))
        completed = json.loads(await next_body(frames))
        assert (completed["type"], completed["seq"]) == ("turn.completed", 2)

        replay = await rpc(client, GetFrames(scope=scope, after_seq=0))
        assert isinstance(replay, Frames) and replay.frames == [accepted, completed]
        context = await rpc(client, GetContext(scope=scope, turn_id="t1"))
        assert isinstance(context, Context) and [m.content for m in context.messages] == ["hello"]
        stranger = scope.model_copy(update={"user_id": "mallory"})
        refused = await rpc(client, GetFrames(scope=stranger))
        assert isinstance(refused, MemoryFailure) and refused.code == "forbidden"
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)  # a clean stop, and any startup error surfaces here
        if client.connected:
            cleanup = await client.channel(prefetch=1)
            for name in topology.durable_queues([]):
                await cleanup.queue_delete(name)
            for name in topology.exchanges():
                await cleanup.exchange_delete(name)
        await client.close()
