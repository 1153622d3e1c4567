"""Real RabbitMQ, real sockets: one namespace per test run, deleted at the end.

The memory service is not part of these tests: `MemoryStandIn` answers the gateway's
ClaimConversation RPC, and `LogTap` consumes the log queues the way memory would, so a
test sees exactly the TurnRequested messages the gateway published.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest_asyncio
from agentry_gateway.server import Gateway
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import MEMORY_REQUEST, ClaimConversation, Claimed, MemoryFailure
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.settings import GatewaySettings
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PARTITIONS = 4
CLAIM_TIMEOUT = 0.5


class MemoryStandIn:
    """Stands in for the memory service in gateway tests: answers ClaimConversation only.

    The first user to claim a conversation owns it. Conversations listed in `silent`
    are answered too late, as a memory service that is down or overloaded would.
    """

    def __init__(self) -> None:
        self.owners: dict[str, tuple[str, str]] = {}
        self.silent: set[str] = set()

    async def handle(self, body: bytes) -> bytes:
        request = MEMORY_REQUEST.validate_json(body)
        assert isinstance(request, ClaimConversation), request
        scope = request.scope
        if scope.conversation_id in self.silent:
            await asyncio.sleep(CLAIM_TIMEOUT * 3)
        created = scope.conversation_id not in self.owners
        owner = self.owners.setdefault(scope.conversation_id, (scope.tenant_id, scope.user_id))
        if owner != (scope.tenant_id, scope.user_id):
            return encode(MemoryFailure(code="forbidden", message="not yours"))
        return encode(Claimed(created=created))


class LogTap:
    """Consumes every log partition (as the memory service would) into one queue."""

    def __init__(self) -> None:
        self.turns: asyncio.Queue[TurnRequested] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.turns.put_nowait(TurnRequested.model_validate_json(message.body))

    async def next(self, timeout: float = 5.0) -> TurnRequested:
        return await asyncio.wait_for(self.turns.get(), timeout)

    def empty(self) -> bool:
        return self.turns.empty()


@dataclass
class Broker:
    bus: Bus
    channel: AbstractRobustChannel
    memory: MemoryStandIn
    log: LogTap

    @property
    def topology(self) -> Topology:
        return self.bus.topology

    async def send_frame(self, conversation_id: str, seq: int, frame_type: str = "message.delta", **extra: Any) -> None:
        """Publish a server frame as the memory service would."""
        body = {"type": frame_type, "conversation_id": conversation_id, "seq": seq, **extra}
        await self.bus.publish(self.topology.frames_exchange, conversation_id, json.dumps(body).encode())


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def broker() -> AsyncIterator[Broker]:
    topology = Topology(f"t{uuid.uuid4().hex}", PARTITIONS)
    bus = Bus(AMQP_URL, topology, name="gateway-tests")
    await bus.connect()
    channel = await bus.channel(prefetch=64)
    memory, log = MemoryStandIn(), LogTap()
    try:
        await bus.serve_rpc(topology.memory_rpc_queue, memory.handle)
        for partition in range(PARTITIONS):
            queue = await bus.declare_work_queue(
                channel, topology.log_queue(partition), topology.log_exchange, str(partition), single_active=True
            )
            await queue.consume(log.on_message)
        yield Broker(bus, channel, memory, log)
    finally:
        await bus.close()
        async with await aio_pika.connect(AMQP_URL) as connection:
            cleanup = await connection.channel()
            for name in topology.durable_queues([]):
                await cleanup.queue_delete(name)
            for name in topology.exchanges():
                await cleanup.exchange_delete(name)


StartGateway = Callable[..., Awaitable[tuple[Gateway, str]]]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def start_gateway(broker: Broker) -> AsyncIterator[StartGateway]:
    """Start an in-process gateway (own bus, as its own process would have); returns it and its ws URL."""
    started: list[Gateway] = []

    async def start(**overrides: Any) -> tuple[Gateway, str]:
        values: dict[str, Any] = {
            "agentry_namespace": broker.topology.namespace,
            "agentry_partitions": PARTITIONS,
            "gateway_port": 0,
            "gateway_max_frame_bytes": 4096,
            "gateway_max_text_chars": 1000,
            "gateway_max_frames_per_second": 1000.0,
            "shutdown_grace_seconds": 5.0,
            "auth_jwt_secret": None,
            "auth_jwt_audience": None,
            **overrides,
        }
        settings = GatewaySettings(**values)
        bus = Bus(AMQP_URL, broker.topology, name="gateway-under-test")
        await bus.connect()
        gateway = Gateway(settings, bus, claim_timeout=CLAIM_TIMEOUT, publish_timeout=2.0)
        port = await gateway.start()
        started.append(gateway)
        return gateway, f"ws://127.0.0.1:{port}/ws"

    yield start
    for gateway in started:
        await gateway.stop(2.0)
        await gateway.bus.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gateway(start_gateway: StartGateway) -> tuple[Gateway, str]:
    """The default gateway most tests share (development auth)."""
    return await start_gateway()
