"""The real RabbitMQ (AMQP_URL, else the local one): each test gets a namespace of its own,
and every queue and exchange it declared is deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from agentry_shared.bus import Bus
from agentry_shared.topology import Topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POOLS = ["default"]


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    """A fresh namespace (2 partitions, delivery limit 2), deleted after the test."""
    namespace = Topology(f"t{uuid.uuid4().hex}", 2, delivery_limit=2)
    try:
        yield namespace
    finally:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in namespace.durable_queues(POOLS):
                await channel.queue_delete(queue)
            for exchange in namespace.exchanges():
                await channel.exchange_delete(exchange)


@pytest.fixture
async def bus(topology: Topology) -> AsyncIterator[Bus]:
    """A connected Bus (which declares the namespace's exchanges on connect)."""
    connected = Bus(AMQP_URL, topology, name="shared-tests")
    await connected.connect()
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def probe() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A plain connection of the test's own, to look at the broker beside the Bus."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        yield connection
