"""The service wiring against the real RabbitMQ, in-process, in a namespace of its own."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import pytest
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested, ToolCompleted, ToolRequested
from agentry_shared.settings import ToolRunnerSettings
from agentry_shared.topology import Topology
from agentry_tool_runner.main import service
from prometheus_client import REGISTRY as METRICS

AMQP_URL = ToolRunnerSettings().amqp_url.get_secret_value()
SCOPE = Scope(tenant_id="t1", user_id="u1", conversation_id="c1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(port: int, task: asyncio.Task[None]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            assert not task.done(), task.exception()
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the tool-runner never became ready")


async def delete_namespace(topology: Topology) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for queue in topology.durable_queues(["default"]):
            await channel.queue_delete(queue)
        for exchange in topology.exchanges():
            await channel.exchange_delete(exchange)


@pytest.fixture
async def client() -> AsyncIterator[Bus]:
    """A running tool-runner and a bus to talk to it; everything is deleted afterwards."""
    topology = Topology(f"t{uuid.uuid4().hex}", 2)
    port = free_port()
    settings = ToolRunnerSettings(
        agentry_namespace=topology.namespace, agentry_partitions=2, tool_runner_port=port, shutdown_grace_seconds=5
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(service(stop, settings))
    bus = Bus(AMQP_URL, topology, name="tool-runner-test")
    try:
        await wait_ready(port, runner)
        await bus.connect()
        yield bus
    finally:
        stop.set()
        await asyncio.wait_for(runner, 15)
        await bus.close()
        await delete_namespace(topology)


def calculator_call(arguments: dict[str, object], tool: str = "calculator", deadline_in: float = 30) -> bytes:
    return encode(
        ToolRequested(
            scope=SCOPE,
            turn_id="turn-1",
            call_id=f"call-{uuid.uuid4().hex[:8]}",
            tool=tool,
            arguments=arguments,
            deadline=time.time() + deadline_in,
        )
    )


async def call(bus: Bus, body: bytes) -> ToolCompleted:
    reply = TOOL_REPLY.validate_json(await bus.request(bus.topology.tool_queue("default"), body, timeout=15))
    assert isinstance(reply, ToolCompleted)
    assert reply.call_id == ToolRequested.model_validate_json(body).call_id
    return reply


async def test_catalog_and_calls_over_the_broker(client: Bus) -> None:
    catalog = TOOL_REPLY.validate_json(
        await client.request(client.topology.tool_catalog_queue, encode(CatalogRequested()), timeout=10)
    )
    assert isinstance(catalog, Catalog)
    assert {"calculator", "current_time"} <= {tool.name for tool in catalog.tools}

    before = METRICS.get_sample_value("agentry_tool_calls_total", {"tool": "calculator", "outcome": "ok"}) or 0
    results = await asyncio.gather(*(call(client, calculator_call({"expression": "37*91"})) for _ in range(3)))
    assert all((r.ok, r.output, r.tool) == (True, "3367", "calculator") for r in results)
    after = METRICS.get_sample_value("agentry_tool_calls_total", {"tool": "calculator", "outcome": "ok"})
    assert after == before + 3

    invalid = await call(client, calculator_call({"expr": "1+1"}))
    assert invalid.error is not None and invalid.error.code == "invalid_arguments"
    unknown = await call(client, calculator_call({}, tool="rm_rf"))
    assert unknown.error is not None and unknown.error.code == "unknown_tool"
    late = await call(client, calculator_call({"expression": "1+1"}, deadline_in=-1))
    assert late.error is not None and late.error.code == "deadline_exceeded"

    # A body that is not a ToolRequested goes to the dead-letter queue, unanswered.
    await client.publish("", client.topology.tool_queue("default"), b'{"kind": "nonsense"}')
    channel = await client.channel(prefetch=1)
    dead = await channel.get_queue(client.topology.dead_letter_queue, ensure=False)
    for _ in range(50):
        message = await dead.get(no_ack=True, fail=False)
        if message is not None:
            assert message.body == b'{"kind": "nonsense"}'
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the malformed request was not dead-lettered")
