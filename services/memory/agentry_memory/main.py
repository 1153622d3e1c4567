"""Wiring: store, bus, the log consumers, the RPC server and the ops endpoints.

Stopping is ordered so nothing is half done: the partitions finish the entry they hold,
RPC stops taking requests and answers those in hand, then the bus and the store close.
Whatever was not acked by then is redelivered by the broker to the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agentry_shared.bus import Bus
from agentry_shared.lifecycle import run_service
from agentry_shared.ops import OpsServer, build_ops_app
from agentry_shared.settings import MemorySettings
from agentry_shared.topology import Topology

from agentry_memory.conversation_log import ConversationLog
from agentry_memory.embedded import EmbeddedStore
from agentry_memory.handlers import LogConsumer
from agentry_memory.rpc import MemoryRpc
from agentry_memory.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[bytes]]


def make_store(settings: MemorySettings) -> Store:
    if settings.mongodb_url is not None:
        # Refuse rather than silently keep state somewhere the operator did not ask for.
        raise RuntimeError("MONGODB_URL is set but the MongoDB store is not available yet; unset it")
    return EmbeddedStore(settings.memory_data_dir)


class InFlight:
    """Counts RPC handlers running, so a stop can let them reply before the bus closes."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def wrap(self, handler: Handler) -> Handler:
        async def counted(body: bytes) -> bytes:
            self._count += 1
            self._idle.clear()
            try:
                return await handler(body)
            finally:
                self._count -= 1
                if self._count == 0:
                    self._idle.set()

        return counted

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def service(stop: asyncio.Event, settings: MemorySettings | None = None) -> None:
    settings = settings or MemorySettings()
    topology = Topology(settings.agentry_namespace, settings.agentry_partitions)
    store = make_store(settings)
    bus = Bus(settings.amqp_url.get_secret_value(), topology, name="memory")
    ops: OpsServer | None = None
    consumer = LogConsumer(bus, ConversationLog(store, topology))
    in_flight = InFlight()
    try:
        await store.open()
        await bus.connect()
        rpc = await bus.serve_rpc(
            topology.memory_rpc_queue, in_flight.wrap(MemoryRpc(store, settings.memory_window_messages).handle)
        )
        await consumer.start()

        def ready() -> tuple[bool, str]:
            if stop.is_set():
                return False, "stopping"
            if not store.is_open:
                return False, "store closed"
            return (True, "ok") if bus.connected else (False, "broker disconnected")

        ops = OpsServer(build_ops_app(ready), settings.bind_host, settings.memory_port)
        await ops.start()
        log.info(
            "memory ready",
            extra={
                "namespace": topology.namespace,
                "partitions": topology.partitions,
                "store": type(store).__name__,
                "port": settings.memory_port,
            },
        )
        await stop.wait()
        log.info("stopping")

        async def drain() -> None:
            await consumer.stop()
            await rpc.cancel()
            await in_flight.wait_idle()

        try:
            await asyncio.wait_for(drain(), settings.shutdown_grace_seconds)
        except TimeoutError:
            log.warning("shutdown grace ran out; unacked work goes back to the broker")
    finally:
        await bus.close()
        await store.close()
        if ops is not None:
            await ops.stop()


def main() -> None:
    settings = MemorySettings()
    run_service("memory", lambda stop: service(stop, settings), settings.log_level)
