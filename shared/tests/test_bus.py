"""Bus against the real broker: confirmed publishing, consuming, RPC, and what survives a
lost connection (through a relay the test cuts: the shared broker is never restarted)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from agentry_shared.bus import Bus, RpcTimeout, encode
from agentry_shared.contracts.memory import BeginTurn, CancelTurnRequest
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import JsonFormatter
from agentry_shared.testing import CuttableProxy, until
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import PublishError

from shared.tests.conftest import AMQP_URL


async def consume_into(bus: Bus, topology: Topology, partition: int) -> asyncio.Queue[AbstractIncomingMessage]:
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    channel = await bus.channel(prefetch=10)
    queue = await bus.declare_work_queue(
        channel, topology.turns_queue(partition), topology.turns_exchange, str(partition), single_active=True
    )

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            received.put_nowait(message)

    await queue.consume(on_message)
    return received


async def test_publish_is_confirmed_and_consumed_with_its_properties(bus: Bus, topology: Topology) -> None:
    received = await consume_into(bus, topology, 0)
    await bus.publish(topology.turns_exchange, "0", b'{"n": 1}', headers={"x-attempt": 2}, correlation_id="c1")
    message = await asyncio.wait_for(received.get(), 5)
    assert message.body == b'{"n": 1}'
    assert (message.content_type, message.correlation_id) == ("application/json", "c1")
    assert message.headers["x-attempt"] == 2
    assert message.delivery_mode == 2  # persistent: survives a broker restart


async def test_a_work_message_no_queue_takes_fails_loudly(bus: Bus, topology: Topology) -> None:
    with pytest.raises(PublishError):
        await bus.publish(topology.turns_exchange, "nobody-bound-here", b"lost?")
    # A transient broadcast (a frame) nobody follows is dropped without an error.
    await bus.publish(topology.frames_exchange, "nobody-follows", b"{}", persistent=False)


async def test_rpc_request_and_reply(bus: Bus, topology: Topology) -> None:
    async def shout(body: bytes) -> bytes:
        return body.upper()

    server = await bus.serve_rpc(topology.memory_rpc, shout)
    try:
        replies = await asyncio.gather(*(bus.request(topology.memory_rpc, f"r{i}".encode()) for i in range(20)))
        assert replies == [f"R{i}".encode() for i in range(20)]  # each caller gets its own reply
    finally:
        await server.cancel()


async def test_rpc_without_a_reply_times_out(bus: Bus, topology: Topology) -> None:
    calls = 0

    async def broken(body: bytes) -> bytes:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    server = await bus.serve_rpc(topology.memory_rpc, broken)
    try:
        with pytest.raises(RpcTimeout):
            await bus.request(topology.memory_rpc, b"x", timeout=0.5)
        assert calls == 1  # dropped, not requeued to fail again and again
    finally:
        await server.cancel()
    with pytest.raises(RpcTimeout):  # nobody serves the queue now
        await bus.request(topology.memory_rpc, b"x", timeout=0.3)


async def test_a_failed_rpc_handler_is_logged_with_the_requests_turn(bus: Bus, topology: Topology) -> None:
    """The line of a handler that raised names the turn and conversation of the request
    (an operator follows the turn to it), whichever way the request names them; a body
    that is not JSON still gets its line, without ids. One line per failure: the broker
    library does not log it again without them."""

    async def broken(body: bytes) -> bytes:
        raise RuntimeError("a bug in the handler")

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("memory"))
    watched = [logging.getLogger("agentry_shared.bus"), logging.getLogger("aiormq"), logging.getLogger("aio_pika")]
    for logger in watched:
        logger.addHandler(handler)
    scope = Scope(tenant_id="t1", user_id="u1", conversation_id="c1")
    requests = [
        encode(BeginTurn(scope=scope, turn_id="turn-1")),
        encode(CancelTurnRequest(tenant_id="t1", user_id="u1", turn_id="turn-2")),
        b"not json",
    ]
    server = await bus.serve_rpc(topology.memory_rpc, broken)
    try:
        for body in requests:
            with pytest.raises(RpcTimeout):
                await bus.request(topology.memory_rpc, body, timeout=0.3)
        await until(lambda: lines.getvalue().count("rpc handler failed") == 3, "three failures logged")
    finally:
        for logger in watched:
            logger.removeHandler(handler)
        await server.cancel()
    failures = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(f["msg"], f.get("turn_id"), f.get("conversation_id")) for f in failures] == [
        ("rpc handler failed", "turn-1", "c1"),
        ("rpc handler failed", "turn-2", None),
        ("rpc handler failed", None, None),
    ]
    assert all("a bug in the handler" in f["exc"] for f in failures)


@pytest.fixture
async def proxy() -> AsyncIterator[CuttableProxy]:
    relay = CuttableProxy(("127.0.0.1", urlsplit(AMQP_URL).port or 5672))
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


async def wait_connected(bus: Bus, connected: bool, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if bus.connected is connected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"bus.connected never became {connected}")


async def test_after_a_lost_connection_consumers_and_rpc_come_back(
    bus: Bus, topology: Topology, proxy: CuttableProxy
) -> None:
    """`connected` follows the connection, and once it is back the same Bus consumes,
    publishes and makes RPC calls again without the service doing anything."""
    url = AMQP_URL.replace(f":{urlsplit(AMQP_URL).port or 5672}/", f":{proxy.port}/") + "?reconnect_interval=0.3"
    flaky = Bus(url, topology, name="shared-tests-flaky")
    await flaky.connect()
    try:
        received = await consume_into(flaky, topology, 1)

        async def echo(body: bytes) -> bytes:
            return b"echo " + body

        await flaky.serve_rpc(topology.tool_catalog, echo)
        assert await flaky.request(topology.tool_catalog, b"before") == b"echo before"

        proxy.cut()
        await wait_connected(flaky, False)
        with pytest.raises(RpcTimeout):  # while down: "no reply", at once, retryable
            await flaky.request(topology.tool_catalog, b"during", timeout=2)
        proxy.mend()
        await wait_connected(flaky, True)

        await bus.publish(topology.turns_exchange, "1", b"after")  # the queue's consumer came back
        assert (await asyncio.wait_for(received.get(), 5)).body == b"after"
        assert await bus.request(topology.tool_catalog, b"x") == b"echo x"  # its RPC server too
        assert await flaky.request(topology.tool_catalog, b"y") == b"echo y"  # and its replies
        await flaky.publish(topology.turns_exchange, "1", b"confirmed again")
        assert (await asyncio.wait_for(received.get(), 5)).body == b"confirmed again"
    finally:
        await flaky.close()
