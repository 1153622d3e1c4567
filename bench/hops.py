"""The broker's floor under the first answer token: the crossings of a turn, with no work.

A turn's first token crosses the broker on its way (see docs/benchmarks.md, "What is
left"): gateway -> `log` (quorum) -> memory -> `turns` (quorum) -> reasoner, then for a
calculator call -> `tools` (quorum) -> tool-runner -> `replies` (classic) -> reasoner,
then -> `log` (quorum) -> memory -> `frames` (classic) -> gateway. Here each service is
a consumer that only publishes the bytes on to the next queue (persistent to a quorum
queue, with a publisher confirm, as the services publish), on a connection of its own,
with aio-pika as the services use it. What is left is the broker's time (a quorum queue
fsyncs before it confirms and delivers) plus aio-pika's: the least those crossings cost
on this machine, before any work of ours. Queues in a namespace of their own, deleted
afterwards; 200 sequential messages per chain after 20 warm-up ones.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pamqp.common import FieldTable

from tests.stack import AMQP_URL

RUNS = int(os.environ.get("BENCH_HOPS_RUNS", "200"))
QUORUM: FieldTable = {"x-queue-type": "quorum"}
# (name, quorum?) of each crossing, in the order a calculator turn's first token takes them.
CALCULATOR = [("log", True), ("turns", True), ("tools", True), ("replies", False), ("log2", True), ("frames", False)]
NO_TOOL = [("log", True), ("turns", True), ("log2", True), ("frames", False)]


async def chain(namespace: str, hops: list[tuple[str, bool]]) -> list[float]:
    """Seconds from the first publish to the last delivery, per message."""
    connections = [await aio_pika.connect(AMQP_URL) for _ in range(len(hops) + 1)]
    arrived: asyncio.Queue[float] = asyncio.Queue()
    names = [f"{namespace}.{name}" for name, _ in hops]
    try:
        channels = [await c.channel(publisher_confirms=True) for c in connections]
        for (_, quorum), queue_name in zip(hops, names, strict=True):
            await channels[0].declare_queue(queue_name, durable=quorum, arguments=QUORUM if quorum else None)
        for i, queue_name in enumerate(names):
            channel = channels[i + 1]
            queue = await channel.get_queue(queue_name)
            onward = names[i + 1] if i + 1 < len(names) else None
            durable = hops[i + 1][1] if onward else False
            await queue.consume(_forwarder(channel, onward, durable, arrived))
        latencies = []
        for n in range(RUNS + 20):
            started = time.perf_counter()
            await _publish(channels[0], names[0], hops[0][1])
            await arrived.get()
            if n >= 20:
                latencies.append(time.perf_counter() - started)
        return latencies
    finally:
        for connection in connections:
            await connection.close()
        async with await aio_pika.connect(AMQP_URL) as cleanup:
            channel = await cleanup.channel()
            for queue_name in names:
                await channel.queue_delete(queue_name)


def _forwarder(
    channel: AbstractChannel, onward: str | None, durable: bool, arrived: asyncio.Queue[float]
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def forward(message: AbstractIncomingMessage) -> None:
        if onward is None:
            arrived.put_nowait(time.perf_counter())
        else:
            await _publish(channel, onward, durable, message.body)
        await message.ack()

    return forward


async def _publish(channel: AbstractChannel, queue: str, durable: bool, body: bytes = b"x" * 512) -> None:
    mode = aio_pika.DeliveryMode.PERSISTENT if durable else aio_pika.DeliveryMode.NOT_PERSISTENT
    await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=mode), routing_key=queue)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run() -> None:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    rows = {"calculator turn (6 crossings, 4 quorum)": CALCULATOR, "no-tool turn (4 crossings, 3 quorum)": NO_TOOL}
    print(f"{RUNS} messages per chain, one at a time; each hop a consumer that publishes on (confirmed)\n")
    print("| first token's crossings | p50 (ms) | p95 (ms) |")
    print("|---|---|---|")
    for label, hops in rows.items():
        latencies = await chain(namespace, hops)
        print(f"| {label} | {pct(latencies, 0.5):.1f} | {pct(latencies, 0.95):.1f} |")
