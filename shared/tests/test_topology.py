"""Topology: the names and the partitioning rule every service relies on, and what a Bus
really declares on the broker from it."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aio_pika
import pytest
from agentry_shared.bus import Bus
from agentry_shared.topology import Topology, partition_of
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, ExchangeType
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable


def test_partition_is_stable_across_processes() -> None:
    """Every replica must route a conversation to the same partition: no per-process hash seed."""
    ids = [f"conv-{i}" for i in range(50)]
    here = [partition_of(c, 8) for c in ids]
    code = f"from agentry_shared.topology import partition_of; print([partition_of(c, 8) for c in {ids!r}])"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        )
        assert out.stdout.strip() == str(here)
    assert set(here) == set(range(8)), "50 conversations should spread over all 8 partitions"


def test_partition_is_in_range_and_follows_the_topology() -> None:
    topology = Topology("ns", 3)
    for conversation in ("a", "b", "c", "ünïcode", ""):
        assert 0 <= topology.partition(conversation) < 3
        assert topology.partition(conversation) == partition_of(conversation, 3)


def test_names_are_distinct_and_inside_the_namespace() -> None:
    topology = Topology("ns1", 4)
    queues = topology.durable_queues(["default", "sandbox"])
    assert len(queues) == len(set(queues)) == 4 + 4 + 2 + 4  # memory.rpc, tools.catalog, dead, dead.handled
    assert all(name.startswith("ns1.") for name in [*queues, *topology.exchanges()])
    other = Topology("ns2", 4)
    assert not set(queues) & set(other.durable_queues(["default", "sandbox"]))
    assert not set(topology.exchanges()) & set(other.exchanges())


async def redeclare_fails(connection: AbstractConnection, name: str, arguments: FieldTable) -> bool:
    """Does the broker refuse to declare queue `name` with these arguments (406)?"""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed:
        return True
    await channel.close()
    return False


async def test_connect_declares_every_exchange_of_the_namespace(
    bus: Bus, topology: Topology, probe: AbstractConnection
) -> None:
    channel = await probe.channel()
    for name in topology.exchanges():
        await channel.declare_exchange(name, passive=True)  # raises if missing
    # The types are what the flows need: control is a fanout, the others route by key.
    assert not await exchange_type_refused(probe, topology.control_exchange, ExchangeType.FANOUT)
    assert await exchange_type_refused(probe, topology.control_exchange, ExchangeType.DIRECT)
    assert not await exchange_type_refused(probe, topology.frames_exchange, ExchangeType.DIRECT)
    assert await exchange_type_refused(probe, topology.frames_exchange, ExchangeType.FANOUT)
    # The dead-letter queue is a quorum queue (declaring it classic is refused).
    assert not await redeclare_fails(probe, topology.dead_letter_queue, {"x-queue-type": "quorum"})
    assert await redeclare_fails(probe, topology.dead_letter_queue, {"x-queue-type": "classic"})


async def exchange_type_refused(connection: AbstractConnection, name: str, kind: ExchangeType) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_exchange(name, kind, durable=True)
    except ChannelPreconditionFailed:
        return True
    await channel.close()
    return False


async def test_work_queue_is_quorum_single_active_with_dead_lettering(
    bus: Bus, topology: Topology, probe: AbstractConnection
) -> None:
    channel = await bus.channel(prefetch=10)
    name = topology.turns_queue(0)
    await bus.declare_work_queue(channel, name, topology.turns_exchange, "0", single_active=True)
    same: FieldTable = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.dead_letter_exchange,
        "x-dead-letter-routing-key": "#",
        "x-delivery-limit": topology.delivery_limit,
        "x-single-active-consumer": True,
    }
    assert not await redeclare_fails(probe, name, same)
    assert await redeclare_fails(probe, name, {**same, "x-single-active-consumer": False})
    assert await redeclare_fails(probe, name, {**same, "x-queue-type": "classic"})
    assert await redeclare_fails(probe, name, {**same, "x-delivery-limit": topology.delivery_limit + 1})


async def test_single_active_consumer_gives_one_consumer_everything(bus: Bus, topology: Topology) -> None:
    """Per-conversation order needs one consumer at a time per partition, whatever the replicas."""
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    for who in got:
        channel = await bus.channel(prefetch=10)
        queue = await bus.declare_work_queue(
            channel, topology.turns_queue(1), topology.turns_exchange, "1", single_active=True
        )

        async def on_message(message: AbstractIncomingMessage, who: str = who) -> None:
            async with message.process():
                got[who].append(message.body)

        await queue.consume(on_message)
    for i in range(10):
        await bus.publish(topology.turns_exchange, "1", str(i).encode())
    for _ in range(100):
        if len(got["a"]) + len(got["b"]) == 10:
            break
        await asyncio.sleep(0.05)
    assert sorted(map(len, got.values())) == [0, 10]
    assert [int(b) for b in got["a"] or got["b"]] == list(range(10))  # in order


async def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(
    bus: Bus, topology: Topology, probe: AbstractConnection
) -> None:
    channel = await bus.channel(prefetch=1)
    queue = await bus.declare_work_queue(channel, topology.log_queue(0), topology.log_exchange, "0", single_active=True)
    deliveries = 0

    async def always_fails(message: AbstractIncomingMessage) -> None:
        nonlocal deliveries
        deliveries += 1
        await message.reject(requeue=True)

    await queue.consume(always_fails)
    await bus.publish(topology.log_exchange, "0", b"poison")
    dead_channel = await probe.channel()
    dead = await dead_channel.declare_queue(topology.dead_letter_queue, passive=True)
    for _ in range(100):
        message = await dead.get(fail=False, no_ack=True)
        if message is not None:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the poison message never reached the dead-letter queue")
    assert message.body == b"poison"
    # delivery_limit=2: delivered, requeued twice more, then dead-lettered (not looping forever).
    assert deliveries == topology.delivery_limit + 1
    await asyncio.sleep(0.2)
    assert deliveries == topology.delivery_limit + 1


async def test_exchanges_survive_a_new_connection(topology: Topology, bus: Bus) -> None:
    """Durable: a second service connecting later finds (and re-declares) the same names."""
    second = Bus(bus.url, topology, name="shared-tests-second")
    await second.connect()  # re-declaring with the same arguments must not be refused
    try:
        assert second.connected
    finally:
        await second.close()
    async with await aio_pika.connect(bus.url) as probe:
        channel = await probe.channel()
        await channel.declare_exchange(topology.turns_exchange, passive=True)
