"""Malformed messages published straight into every queue and exchange the services
consume: a work queue's go to the dead-letter queue, an RPC gets an error reply (or its
answer), a broadcast is ignored; no service dies, and the stack still serves a turn.
A stack of its own: poison must not reach the other tests' conversations."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from agentry_shared.topology import RpcTarget, Topology
from agentry_tool_runner.tools.registry import REGISTRY
from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import AMQP_URL, PORT_VARS, Stack

pytestmark = pytest.mark.e2e

BODIES: list[bytes] = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"[]",
    b"{}",
    b'{"kind": "turn.requested"}',
    b'{"kind": "event.posted", "scope": {"tenant_id": "", "user_id": 5}}',
    b'{"kind": "tool.requested", "arguments": "x" }',
    b'{"kind": "memory.get_frames", "scope": {"tenant_id": "t", "user_id": "u", "conversation_id": "c"}, '
    b'"after_seq": -1}',
    b'{"kind": "memory.admit_turn", "budgets": {"user_turns_per_minute": -1}}',
    json.dumps({"kind": "nothing", "x": "\\ud800" * 10, "deep": [[[[[[[[]]]]]]]]}).encode(),
    b"[" * 5000,
    b"x" * 200_000,
]


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("queuefuzz")))
    try:
        s.start_all()
        yield s
    finally:
        s.close()


def dead_letters(stack: Stack) -> float:
    with urllib.request.urlopen(stack.http("memory", "/metrics"), timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(m) for m in re.findall(r"^agentry_memory_dead_letters_total\{[^}]*\} (\S+)$", text, re.M))


async def rpc_replies(channel: aio_pika.abc.AbstractChannel, topology: Topology, target: RpcTarget) -> list[bytes]:
    """Each body sent as a request to `target`; the reply to each (every request must get one)."""
    replies = await channel.declare_queue(topology.reply_queue("fuzz", uuid.uuid4().hex), exclusive=True)
    await replies.bind(topology.replies_exchange, routing_key=replies.name)
    exchange = await channel.get_exchange(target.exchange, ensure=False)
    for n, body in enumerate(BODIES):
        request = aio_pika.Message(body, reply_to=replies.name, correlation_id=str(n))
        await exchange.publish(request, routing_key=target.routing_key)
    got: list[bytes] = []
    async with replies.iterator() as incoming:
        async with asyncio.timeout(20):
            async for message in incoming:
                async with message.process():
                    got.append(message.body)
                if len(got) == len(BODIES):
                    break
    return got


async def test_malformed_messages_in_every_queue_kill_no_service(fuzz_stack: Stack) -> None:
    topology = Topology(fuzz_stack.namespace, int(fuzz_stack.env["AGENTRY_PARTITIONS"]))
    work_queues = [
        *(topology.log_queue(p) for p in range(topology.partitions)),
        *(topology.turns_queue(p) for p in range(topology.partitions)),
        *(topology.tool_queue(pool) for pool in REGISTRY.pools()),
    ]
    before = dead_letters(fuzz_stack)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for queue in work_queues:
            for body in BODIES:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue
                )
        control = await channel.get_exchange(topology.control_exchange, ensure=False)
        members = await channel.get_exchange(topology.members_exchange, ensure=False)
        for body in BODIES:
            await control.publish(aio_pika.Message(body), routing_key="")
            for role in PORT_VARS:
                await members.publish(aio_pika.Message(body), routing_key=role)
        memory_replies = await rpc_replies(channel, topology, topology.memory_rpc)
        catalog_replies = await rpc_replies(channel, topology, topology.tool_catalog)

    assert all(json.loads(reply)["kind"] == "memory.failure" for reply in memory_replies), memory_replies
    assert all("tools" in json.loads(reply) for reply in catalog_replies)
    # Every work-queue message reached the dead-letter queue (memory takes them from there).
    expected = before + len(work_queues) * len(BODIES)
    for _ in range(120):
        if dead_letters(fuzz_stack) >= expected:
            break
        await asyncio.sleep(0.5)
    assert dead_letters(fuzz_stack) >= expected, (dead_letters(fuzz_stack), expected)
    for proc in fuzz_stack.procs:
        assert proc.alive(), f"{proc.name} died:\n{proc.log_path.read_text()[-3000:]}"
        with urllib.request.urlopen(fuzz_stack.http(proc.name, "/readyz"), timeout=5) as reply:
            assert reply.status == 200, proc.name
    async with connect(f"{fuzz_stack.ws_url}?user=after-{uuid.uuid4().hex[:6]}") as ws:
        assert "3367" in answer(await converse(ws, "what is 37*91?"))
