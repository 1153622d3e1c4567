"""Fixtures shared by the memory tests: a store per backend, scopes, the service on the broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from agentry_memory.main import service
from agentry_memory.store import Store
from agentry_memory.store.mongo import MongoStore
from agentry_memory.store.sqlite import SqliteStore
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.frames import FANOUT_SEPARATOR
from agentry_shared.contracts.memory import MEMORY_REPLY, MemoryReply
from agentry_shared.contracts.scope import Scope
from agentry_shared.settings import MemorySettings
from agentry_shared.testing import delete_declared
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import BaseModel, SecretStr
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).parent))  # memory_fake_mongo, beside this file
try:
    from memory_fake_mongo import FakeMongoClient
except ImportError:  # mongomock is not installed: no fake run
    FakeMongoClient = None  # type: ignore[assignment,misc]

MONGODB_URL = os.environ.get("MONGODB_URL")
_FAKE_SERVERS: dict[Path, Any] = {}


def _database(tmp_path: Path) -> str:
    """One database per test (the same for every store the test opens)."""
    return "agentry_test_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]


def _fake_mongo(tmp_path: Path) -> Store:
    server = _FAKE_SERVERS.setdefault(tmp_path, FakeMongoClient())
    return MongoStore("mongodb://fake", _database(tmp_path), client=server)


# Each backend: how to build it on a fresh location (the test's tmp_path).
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "embedded": lambda tmp_path: SqliteStore(tmp_path / "data"),
    # A real MongoDB whenever MONGODB_URL names one (CI: .github/workflows/mongodb.yml).
    "mongodb": lambda tmp_path: MongoStore(str(MONGODB_URL), _database(tmp_path)),
    # mongomock behind PyMongo's async API (tests/memory_fake_mongo.py): a stand-in, here.
    "fakemongo": _fake_mongo,
}
# Parametrised only over what is there: no MONGODB_URL, no mongodb run (and no skip noise).
BACKEND_PARAMS = [pytest.param("embedded")]
if MONGODB_URL is not None:
    BACKEND_PARAMS.append(pytest.param("mongodb", marks=pytest.mark.mongodb))
if FakeMongoClient is not None:
    BACKEND_PARAMS.append(pytest.param("fakemongo", marks=pytest.mark.fakemongo))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fakemongo: the MongoDB store on mongomock (a stand-in, not MongoDB)")


@pytest.fixture(params=BACKEND_PARAMS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    """A factory, so a test can close a store and open another on the same data."""
    backend = BACKENDS[request.param]
    yield lambda: backend(tmp_path)
    _FAKE_SERVERS.pop(tmp_path, None)
    if request.param == "mongodb":
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(str(MONGODB_URL))
        await client.drop_database(_database(tmp_path))
        await client.close()


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def scope() -> Scope:
    return Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")


# ---- the service against the real RabbitMQ ------------------------------------------


@pytest.fixture
async def broker() -> AsyncIterator[Bus]:
    """A connected Bus in a namespace of its own (every exchange, `<ns>.dead` too); its
    queues and exchanges are deleted afterwards."""
    bus = Bus(MemorySettings().amqp_url.get_secret_value(), Topology(f"t{uuid.uuid4().hex}", 2), "dead-test")
    await bus.connect()
    try:
        yield bus
    finally:
        await delete_declared(await bus.channel(prefetch=1), bus.topology)
        await bus.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def readiness(port: int) -> int | None:
    """The /readyz status, None when nothing answers."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                return response.status
        except aiohttp.ClientError:
            return None


async def wait_readiness(port: int, status: int = 200, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await readiness(port) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never answered {status}")


@dataclass
class MemoryUnderTest:
    """A memory service in-process, in a namespace of its own, and a client of the broker."""

    settings: MemorySettings
    client: Bus  # straight to the broker, whatever URL the service uses

    @property
    def topology(self) -> Topology:
        return self.client.topology

    async def readiness_becomes(self, status: int, timeout: float = 20.0) -> None:
        await wait_readiness(self.settings.memory_port, status, timeout)

    async def rpc(self, request: BaseModel, timeout: float = 10.0) -> MemoryReply:
        body = await self.client.request(self.topology.memory_rpc, encode(request), timeout=timeout)
        return MEMORY_REPLY.validate_json(body)

    async def listen(self, exchange: str, routing_key: str) -> asyncio.Queue[bytes]:
        """A temporary queue of our own bound to `exchange`: what is published there."""
        channel = await self.client.channel(prefetch=100)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)
        return await self.consume(queue, frames=exchange == self.topology.frames_exchange)

    async def consume_queue(self, name: str) -> asyncio.Queue[bytes]:
        channel = await self.client.channel(prefetch=100)
        return await self.consume(await channel.get_queue(name))

    @staticmethod
    async def consume(queue: AbstractQueue, frames: bool = False) -> asyncio.Queue[bytes]:
        """Ack and collect (quorum queues with single active consumer refuse basic.get).
        `frames`: a fan-out message holds one frame per line; collect each frame."""
        bodies: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            for body in message.body.split(FANOUT_SEPARATOR) if frames else [message.body]:
                bodies.put_nowait(body)

        await queue.consume(on_message)
        return bodies

    @staticmethod
    async def next_json(bodies: asyncio.Queue[bytes], timeout: float = 10.0) -> Any:
        return json.loads(await asyncio.wait_for(bodies.get(), timeout))


MemoryFactory = Callable[..., Awaitable[MemoryUnderTest]]


@pytest.fixture
async def start_memory(tmp_path: Path) -> AsyncIterator[MemoryFactory]:
    """Starts the service (optionally through another broker URL); stops it and deletes
    every queue and exchange of its namespace afterwards, and nothing else."""
    started: list[tuple[asyncio.Event, asyncio.Task[None], Bus]] = []

    async def start(amqp_url: str | None = None) -> MemoryUnderTest:
        settings = MemorySettings(
            agentry_namespace=f"t{uuid.uuid4().hex}",
            agentry_partitions=2,
            memory_data_dir=tmp_path / "data",
            memory_port=free_port(),
            shutdown_grace_seconds=5,
        )
        if amqp_url is not None:
            settings.amqp_url = SecretStr(amqp_url)
        topology = Topology.from_settings(settings)
        stop = asyncio.Event()
        running = asyncio.create_task(service(stop, settings))
        client = Bus(MemorySettings().amqp_url.get_secret_value(), topology, name="memory-test")
        started.append((stop, running, client))
        await wait_readiness(settings.memory_port)
        await client.connect()
        return MemoryUnderTest(settings, client)

    yield start
    for stop, running, client in started:
        stop.set()
        await asyncio.wait_for(running, 15)  # a clean stop, and any startup error surfaces here
        if client.connected:
            await delete_declared(await client.channel(prefetch=1), client.topology)
        await client.close()
