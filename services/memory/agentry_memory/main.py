"""Wiring: store, bus, the log and dead-letter consumers, the RPC server with the context
assembler and its summariser, the retention sweeper and the ops endpoints.

Stopping is ordered so nothing is half done: the partitions finish the entry they hold,
RPC and the dead-letter consumer stop taking messages and finish those in hand, then the
bus and the store close. Whatever was not acked by then is redelivered by the broker.

The broker may go away and come back (a restart): the connection is aio-pika's robust
one, which reopens our channels, re-declares their queues and resumes their consumers;
a log partition whose channel broke mid-entry subscribes again by itself (log/consumer.py).
"""

from __future__ import annotations

import asyncio
import logging

from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.lifecycle import run_service
from agentry_shared.metrics import publish_build_info
from agentry_shared.ops import OpsServer, build_ops_app
from agentry_shared.settings import MemorySettings
from agentry_shared.topology import Topology

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.context.llm import OpenAISummaryModel
from agentry_memory.context.summaries import Summarizer
from agentry_memory.log.consumer import LogConsumer
from agentry_memory.log.dead_letters import DeadLetterConsumer
from agentry_memory.log.inflight import InFlight
from agentry_memory.log.sequencer import ConversationLog
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.settings import service_settings
from agentry_memory.store import Store
from agentry_memory.store.mongo import MongoStore
from agentry_memory.store.sqlite import SqliteStore
from agentry_memory.store.timing import time_operations
from agentry_memory.upkeep.retention import DEFAULT_RETENTION_HOURS, FrameSweeper

log = logging.getLogger(__name__)


def make_store(settings: MemorySettings) -> Store:
    """MongoDB when MONGODB_URL is set, else the SQLite store in MEMORY_DATA_DIR."""
    local = service_settings(settings)
    if local.mongodb_url is not None:
        mongo = MongoStore(
            local.mongodb_url.get_secret_value(),
            local.mongodb_database,
            reasoning_retention_seconds=local.memory_reasoning_retention_days * 86400.0,
        )
        return time_operations(mongo, "mongodb")
    return time_operations(SqliteStore(local.memory_data_dir), "sqlite")


def make_assembler(store: Store, settings: MemorySettings, summarizer: Summarizer | None) -> ContextAssembler:
    return ContextAssembler(
        store,
        window_messages=settings.memory_window_messages,
        window_tokens=settings.memory_window_tokens,
        recall_facts=settings.memory_recall_facts,
        recall_tasks=settings.memory_recall_tasks,
        summarizer=summarizer,
    )


def make_summarizer(store: Store, settings: MemorySettings) -> tuple[Summarizer, OpenAISummaryModel]:
    model = OpenAISummaryModel(
        settings.openai_base_url,
        settings.openai_api_key.get_secret_value(),
        settings.llm_model,
        settings.memory_summary_timeout_seconds,
    )
    summarizer = Summarizer(
        store,
        model,
        trigger_tokens=settings.memory_summary_trigger_tokens,
        # A batch and the previous summary must fit in one model request comfortably.
        batch_tokens=settings.memory_window_tokens // 2,
        max_summary_tokens=settings.memory_window_tokens // 4,
    )
    return summarizer, model


def retention_hours(settings: MemorySettings) -> float:
    """MEMORY_FRAME_RETENTION_HOURS once the shared settings carry it; the default until then."""
    return float(getattr(settings, "memory_frame_retention_hours", DEFAULT_RETENTION_HOURS))


async def service(stop: asyncio.Event, shared_settings: MemorySettings | None = None) -> None:
    settings = service_settings(shared_settings)
    topology = Topology.from_settings(settings)
    publish_build_info("memory")
    store = make_store(settings)
    bus = Bus(settings.amqp_url.get_secret_value(), topology, name="memory")
    ops: OpsServer | None = None
    summarizer, summary_model = make_summarizer(store, settings)
    assembler = make_assembler(store, settings, summarizer)
    conversation_log = ConversationLog(store, topology, assembler)
    consumer = LogConsumer(bus, conversation_log, settings=settings)
    dead_letters = DeadLetterConsumer(bus, conversation_log)
    sweeper = FrameSweeper(
        store, retention_hours(settings), reasoning_retention_days=settings.memory_reasoning_retention_days
    )
    in_flight = InFlight()

    async def broadcast(message: ControlMessage) -> None:
        # Transient and not mandatory: a cancel nobody hears (no reasoner up) is no error,
        # BeginTurn tells the next reasoner anyway.
        await bus.publish(topology.control_exchange, "", encode(message), persistent=False)

    try:
        await store.open()
        await bus.connect()
        rpc_core = MemoryRpc(
            store,
            settings.memory_window_messages,
            broadcast=broadcast,
            assembler=assembler,
            max_conversations_per_user=settings.memory_max_conversations_per_user,
        )
        rpc = await bus.serve_rpc(topology.memory_rpc, in_flight.wrap(rpc_core.handle))
        await consumer.start()
        await dead_letters.start()
        sweeper.start()

        def ready() -> tuple[bool, str]:
            if stop.is_set():
                return False, "stopping"
            if not store.is_open:
                return False, "store closed"
            if not bus.connected:
                return False, "broker disconnected"
            assert bus.connection is not None
            return (True, "ok") if bus.connection.connected.is_set() else (False, "broker reconnecting")

        ops = OpsServer(build_ops_app(ready), settings.bind_host, settings.memory_port, "MEMORY_PORT")
        await ops.start()
        log.info(
            "memory ready",
            extra={
                "namespace": topology.namespace,
                "partitions": topology.partitions,
                "store": type(store).__name__,
                "port": settings.memory_port,
                "frame_retention_hours": sweeper.retention_seconds / 3600,
                "window_tokens": settings.memory_window_tokens,
                "summary_model": settings.llm_model,
            },
        )
        await stop.wait()
        log.info("stopping")

        async def drain() -> None:
            await sweeper.stop()
            await consumer.stop()
            await rpc.cancel()
            await dead_letters.stop()
            await in_flight.wait_idle()

        try:
            await asyncio.wait_for(drain(), settings.shutdown_grace_seconds)
        except TimeoutError:
            log.warning("shutdown grace ran out; unacked work goes back to the broker")
    finally:
        await sweeper.stop()
        await summarizer.stop()
        await summary_model.close()
        await bus.close()
        await store.close()
        if ops is not None:
            await ops.stop()


def main() -> None:
    settings = MemorySettings()
    run_service("memory", lambda stop: service(stop, settings), settings.log_level)
