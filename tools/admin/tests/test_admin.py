"""agentry-admin as the installed console script, against the real RabbitMQ: each test in a
namespace of its own (the stack's, or a fresh one)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.topology import Topology
from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import AMQP_URL, Stack, delete_namespace, free_port

SCRIPT = Path(sys.executable).with_name("agentry-admin")


def admin(*args: str, namespace: str, partitions: int = 4, check: bool = True) -> Any:
    env = {**os.environ, "AMQP_URL": AMQP_URL, "AGENTRY_NAMESPACE": namespace, "AGENTRY_PARTITIONS": str(partitions)}
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    if not check:
        return done
    assert done.returncode == 0, done.stderr
    for line in done.stderr.splitlines():
        json.loads(line)  # the logs are JSON too
    return json.loads(done.stdout)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    asyncio.run(delete_namespace(name, 4))


async def _take(queue: aio_pika.abc.AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """`count` deliveries by consuming (log queues are single-active-consumer: no basic.get)."""
    inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    tag = await queue.consume(inbox.put)
    try:
        return [await asyncio.wait_for(inbox.get(), 5) for _ in range(count)]
    finally:
        await queue.cancel(tag)


async def _dead_letter(namespace: str, bodies: list[bytes]) -> None:
    """Publish to log.0 and reject each: the broker dead-letters them with `x-death`."""
    topology = Topology(namespace, 4)
    bus = Bus(AMQP_URL, topology, "admin-test")
    await bus.connect()  # declares the exchanges and the dead-letter queue
    try:
        channel = await bus.channel(prefetch=10)
        queue = await bus.declare_work_queue(
            channel, topology.log_queue(0), topology.log_exchange, "0", single_active=True
        )
        for body in bodies:
            await bus.publish(topology.log_exchange, "0", body)
        for message in await _take(queue, len(bodies)):
            await message.reject(requeue=False)
        await asyncio.sleep(0.3)  # dead-lettering is asynchronous
    finally:
        await bus.close()


async def _queue_bodies(namespace: str, queue_name: str, count: int | None = None) -> list[bytes]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        if count is not None:
            taken = await _take(queue, count)
            await asyncio.sleep(0.3)
            assert (await channel.declare_queue(queue_name, passive=True)).declaration_result.message_count == 0
            return [m.body for m in taken]
        bodies = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
        return bodies


def test_dead_letters_are_listed_without_loss_and_replayed_to_their_queue(namespace: str) -> None:
    asyncio.run(_dead_letter(namespace, [b'{"n": 1}', b'{"n": 2}']))
    for _ in range(3):  # listing again and again loses nothing and keeps the order
        listed = admin("dead", "list", namespace=namespace)
        assert [d["body"] for d in listed] == ['{"n": 1}', '{"n": 2}']
    assert listed[0]["from_exchange"] == f"{namespace}.log"
    assert listed[0]["from_queue"] == f"{namespace}.log.0"
    assert listed[0]["from_routing_key"] == "0" and listed[0]["reason"] == "rejected"

    replayed = admin("dead", "replay", "--index", "1", namespace=namespace)
    assert [d["body"] for d in replayed["replayed"]] == ['{"n": 2}'] and replayed["kept"] == 1
    assert [d["body"] for d in admin("dead", "list", namespace=namespace)] == ['{"n": 1}']
    assert asyncio.run(_queue_bodies(namespace, f"{namespace}.log.0", 1)) == [b'{"n": 2}']  # back in its queue


def test_namespace_delete_needs_yes(namespace: str) -> None:
    asyncio.run(_dead_letter(namespace, [b"{}"]))
    refused = admin("namespace", "delete", namespace=namespace, check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert len(asyncio.run(_queue_bodies(namespace, f"{namespace}.dead"))) == 1  # still there
    deleted = admin("namespace", "delete", "--yes", namespace=namespace)["deleted"]
    assert f"{namespace}.dead" in deleted and f"{namespace}.log" in deleted
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        asyncio.run(_queue_bodies(namespace, f"{namespace}.dead"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("adminstack")))
    try:
        s.start_all()
        yield s
    finally:
        s.close()


def test_partitions_show_each_reasoner_and_every_owner(stack: Stack) -> None:
    stack.wait_ready(stack.start("reasoner", port=free_port()))
    report = admin("partitions", "--seconds", "3", namespace=stack.namespace)
    reasoners = report["reasoner"]
    assert len(reasoners["members"]) == 2
    assert sorted(p for held in reasoners["members"].values() for p in held) == [0, 1, 2, 3]
    assert set(reasoners["owners"].values()) == set(reasoners["members"])
    assert len(report["memory"]["members"]) == 1


async def test_export_a_conversation(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=exporter") as ws:
        frames = await converse(ws, "what is 37*91?")
    assert "3367" in answer(frames)
    conversation = frames[0]["conversation_id"]
    exported = await asyncio.to_thread(
        admin,
        "conversations",
        "export",
        "--user",
        "exporter",
        "--conversation",
        conversation,
        namespace=stack.namespace,
    )
    types = [f["type"] for f in exported["frames"]]
    assert exported["conversation_id"] == conversation
    assert "message.accepted" in types and types[-1] == "turn.completed"
    assert [f["seq"] for f in exported["frames"]] == sorted(f["seq"] for f in exported["frames"])


async def test_list_a_users_conversations(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=lister") as ws:
        first = (await converse(ws, "hello there"))[0]["conversation_id"]
        second = (await converse(ws, "what is 37*91?"))[0]["conversation_id"]
    listed = await asyncio.to_thread(admin, "conversations", "list", "--user", "lister", namespace=stack.namespace)
    assert [c["conversation_id"] for c in listed] == [second, first]  # the most recently active first
    others = await asyncio.to_thread(admin, "conversations", "list", "--user", "nobody", namespace=stack.namespace)
    assert others == []


async def _dead_turn(stack: Stack, scope: Scope, turn_id: str) -> str:
    """A TurnRequested dead-lettered for real (rejected from a dead-lettering queue of the
    stack's namespace): memory takes it from `<ns>.dead`. Returns that queue's name."""
    topology = Topology(stack.namespace, 4)
    bus = Bus(AMQP_URL, topology, "admin-test")
    await bus.connect()
    name = f"{stack.namespace}.probe.{uuid.uuid4().hex[:8]}"
    try:
        channel = await bus.channel(prefetch=1)
        queue = await bus.declare_work_queue(channel, name, topology.log_exchange, name, single_active=False)
        turn = TurnRequested(
            scope=scope,
            turn_id=turn_id,
            text="never runs",
            client_message_id=f"m-{turn_id}",
            accepted_at=datetime.now(UTC),
        )
        await bus.publish(topology.log_exchange, name, encode(turn))
        [message] = await _take(queue, 1)
        await message.reject(requeue=False)
        await asyncio.sleep(0.3)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await bus.close()
    return name


async def test_dead_letters_memory_handled_are_listed_too(stack: Stack) -> None:
    """Memory fails a dead turn for its user and keeps the letter: `dead list` shows it with
    memory's outcome (it is no longer in `<ns>.dead`), and `dead replay` leaves it alone
    unless picked by its index."""
    scope = Scope(tenant_id="default", user_id="dead-user", conversation_id=f"c-{uuid.uuid4().hex[:8]}")
    probe = await _dead_turn(stack, scope, "t-dead")
    deadline = time.monotonic() + 15
    while True:
        listed = await asyncio.to_thread(admin, "dead", "list", namespace=stack.namespace)
        mine = [d for d in listed if d["from_queue"] == probe]
        if mine and mine[0]["handled"] is not None:
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.3)
    [letter] = mine
    assert letter["queue"] == f"{stack.namespace}.dead.handled"
    assert letter["handled"]["outcome"] == "turn_failed" and letter["handled"]["kind"] == "turn.requested"
    assert letter["from_exchange"] == f"{stack.namespace}.log" and letter["reason"] == "rejected"
    assert json.loads(letter["body"])["turn_id"] == "t-dead"
    # The user heard of it: the conversation ends with turn.failed, code poison.
    exported = await asyncio.to_thread(
        admin, "conversations", "export", "--user", "dead-user", "--conversation", scope.conversation_id,
        namespace=stack.namespace,
    )  # fmt: skip
    assert exported["frames"][-1]["type"] == "turn.failed"
    assert exported["frames"][-1]["error"]["code"] == "poison"

    replayed = await asyncio.to_thread(admin, "dead", "replay", namespace=stack.namespace)
    assert replayed["replayed"] == []  # handled ones only go back when picked
    again = await asyncio.to_thread(admin, "dead", "list", namespace=stack.namespace)
    assert [d["index"] for d in again if d["from_queue"] == probe] == [letter["index"]]  # listing loses nothing
