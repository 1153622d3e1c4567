"""Real RabbitMQ, real sockets: one namespace per test run, deleted at the end.

Test modules import the helpers below from `services.gateway.tests.conftest` (the name
pytest's importlib mode gives this file, so it is the same module, not a second copy).

The memory service is not part of these tests: `MemoryStandIn` (agentry_shared.testing)
answers the gateway's memory RPCs (claim, get frames, cancel, decide approval) from dicts,
and `LogTap` consumes the log queues the way memory would, so a test sees exactly the
TurnRequested messages the gateway published. `broker_proxy` is a TCP relay to the broker
(`CuttableProxy`) that a test can cut, to show a gateway a broker outage without touching
the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import pytest_asyncio
from agentry_gateway.server import Gateway
from agentry_shared.bus import Bus
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.settings import GatewaySettings
from agentry_shared.testing import CuttableProxy, MemoryStandIn, delete_declared
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel
from websockets.asyncio.client import ClientConnection

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BROKER_PORT = urlsplit(AMQP_URL).port or 5672
PARTITIONS = 4
CLAIM_TIMEOUT = 0.5


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

    async def send_frame(
        self,
        conversation_id: str,
        seq: int,
        frame_type: str = "message.delta",
        *,
        store: bool = True,
        publish: bool = True,
        **extra: Any,
    ) -> None:
        """Store a server frame in the memory stand-in, then publish it, as the memory service does.

        `publish=False` is a frame that a gateway never received (lost in an outage).
        """
        body = {"type": frame_type, "conversation_id": conversation_id, "seq": seq, **extra}
        if store:
            self.memory.frames.setdefault(conversation_id, {})[seq] = body
        if publish:
            # Transient and not mandatory, as frames are: a frame nobody follows is dropped.
            await self.bus.publish(
                self.topology.frames_exchange, conversation_id, json.dumps(body).encode(), persistent=False
            )


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def broker() -> AsyncIterator[Broker]:
    topology = Topology(f"t{uuid.uuid4().hex}", PARTITIONS)
    bus = Bus(AMQP_URL, topology, name="gateway-tests")
    await bus.connect()
    channel = await bus.channel(prefetch=64)
    memory, log = MemoryStandIn(bus, late_by=CLAIM_TIMEOUT * 3), LogTap()
    try:
        await memory.start()
        for partition in range(PARTITIONS):
            queue = await bus.declare_work_queue(
                channel, topology.log_queue(partition), topology.log_exchange, str(partition), single_active=True
            )
            await queue.consume(log.on_message)
        yield Broker(bus, channel, memory, log)
    finally:
        await bus.close()
        async with await aio_pika.connect(AMQP_URL) as connection:
            await delete_declared(await connection.channel(), topology)


StartGateway = Callable[..., Awaitable[tuple[Gateway, str]]]


def _gateway_starter(broker: Broker, started: list[Gateway]) -> StartGateway:
    """Starts in-process gateways (own bus, as its own process would have), each kept in
    `started` for the fixture that stops them."""

    async def start(**overrides: Any) -> tuple[Gateway, str]:
        values: dict[str, Any] = {
            "agentry_namespace": broker.topology.namespace,
            "agentry_partitions": PARTITIONS,
            "gateway_port": 0,
            "gateway_max_frame_bytes": 4096,
            "gateway_max_text_chars": 1000,
            "gateway_max_frames_per_second": 1000.0,
            "shutdown_grace_seconds": 5.0,
            "auth_dev_identity": True,
            "auth_jwt_secret": None,
            "auth_jwt_audience": None,
            **overrides,
        }
        gateway_options: dict[str, Any] = {"memory_timeout": CLAIM_TIMEOUT, "publish_timeout": 2.0}
        for name in ("memory_timeout", "publish_timeout", "replay_page", "outage_retry_seconds"):
            if name in values:
                gateway_options[name] = values.pop(name)
        amqp_url, connect = values.pop("amqp_url", AMQP_URL), values.pop("connect", True)
        settings = GatewaySettings(**values)
        bus = Bus(amqp_url, broker.topology, name="gateway-under-test")
        if connect:  # else the gateway connects by itself, in the background
            await bus.connect()
        gateway = Gateway(settings, bus, **gateway_options)
        port = await gateway.start()
        started.append(gateway)
        return gateway, f"ws://127.0.0.1:{port}/ws"

    return start


async def _stop_all(started: list[Gateway]) -> None:
    for gateway in started:
        await gateway.stop(2.0)
        await gateway.bus.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def start_gateway(broker: Broker) -> AsyncIterator[StartGateway]:
    """Start an in-process gateway; returns it and its ws URL. Stopped at the session's end.

    Keyword arguments are settings, plus `memory_timeout`, `publish_timeout`, `replay_page`,
    `outage_retry_seconds` (Gateway's), `amqp_url`, and `connect=False` to leave connecting to the gateway.
    """
    started: list[Gateway] = []
    yield _gateway_starter(broker, started)
    await _stop_all(started)


@pytest_asyncio.fixture(loop_scope="session")
async def start_own_gateway(broker: Broker) -> AsyncIterator[StartGateway]:
    """As `start_gateway`, stopped at the test's end: for a gateway on `broker_proxy`,
    which would otherwise go on reconnecting through the relay after its test."""
    started: list[Gateway] = []
    yield _gateway_starter(broker, started)
    await _stop_all(started)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gateway(start_gateway: StartGateway) -> tuple[Gateway, str]:
    """The default gateway most tests share (development auth)."""
    return await start_gateway()


# ---- the client side of a test's WebSocket (used by every test file that opens one) ------


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame the gateway sends, as JSON (fails after `timeout` seconds)."""
    doc = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(doc, dict)
    return doc


async def recv_seqs(ws: ClientConnection, count: int) -> list[int]:
    """The seqs of the next `count` frames, none of them an error."""
    frames = [await recv_json(ws) for _ in range(count)]
    assert all(frame["type"] != "error" for frame in frames), frames
    return [frame["seq"] for frame in frames]


async def assert_silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    """The gateway sends nothing for `seconds`."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


def issued(broker: Broker, user: str, conversation_id: str, tenant: str = "default") -> str:
    """A conversation memory issued to `user` earlier (as a `message` without
    `conversation_id` does): a client may name only such ids, never invent one."""
    broker.memory.owners[conversation_id] = (tenant, user)
    return conversation_id


async def send_message(ws: ClientConnection, text: str = "hello", **fields: Any) -> None:
    await ws.send(json.dumps({"type": "message", "text": text, **fields}))


@pytest_asyncio.fixture(loop_scope="session")
async def broker_proxy() -> AsyncIterator[CuttableProxy]:
    """A relay to the broker that is down until the test calls `mend()`: connections
    through it are refused, then `cut()` drops them all (a broker outage, as the gateway
    sees it). The broker sees the cut as the client going away, so it deletes that
    connection's exclusive queues, exactly as when the broker itself restarts."""
    proxy = CuttableProxy(("127.0.0.1", BROKER_PORT))
    await proxy.start()
    proxy.cut()
    yield proxy
    await proxy.close()


@pytest.fixture
def proxy_url(broker_proxy: CuttableProxy) -> str:
    """The broker's URL through `broker_proxy`, reconnecting quickly."""
    return f"amqp://guest:guest@127.0.0.1:{broker_proxy.port}/?reconnect_interval=0.3"
