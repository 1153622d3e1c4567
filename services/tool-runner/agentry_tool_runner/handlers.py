"""The broker side: tool calls from `tools.<pool>` queues, and the catalog RPC.

Calls run as tasks so one slow tool does not hold up the others; a semaphore bounds them
(prefetch alone would not: it applies per consumer, and a worker may serve several pools).
Replies go to the caller's direct reply-to queue with its correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from agentry_shared.bus import Bus, Consumer, encode
from agentry_shared.contracts.tools import Catalog, CatalogRequested, ToolCompleted, ToolRequested
from agentry_shared.logs import bind_context
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ConsumerTag
from pydantic import ValidationError

from agentry_tool_runner.executor import Executor, failure
from agentry_tool_runner.metrics import TOOL_CALL_DURATION, TOOL_CALLS, TOOL_CALLS_IN_FLIGHT
from agentry_tool_runner.registry import Registry

log = logging.getLogger(__name__)


class ToolCallConsumer:
    def __init__(self, bus: Bus, registry: Registry, executor: Executor, concurrency: int) -> None:
        self.bus = bus
        self.registry = registry
        self.executor = executor
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._consumers: list[tuple[AbstractQueue, ConsumerTag]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        self._catalog_rpc: Consumer | None = None

    async def start(self, pools: list[str]) -> None:
        topology = self.bus.topology
        channel = await self.bus.channel(prefetch=self.concurrency)
        for pool in pools:
            queue = await self.bus.declare_work_queue(
                channel, topology.tool_queue(pool), topology.tools_exchange, routing_key=pool, single_active=False
            )
            self._consumers.append((queue, await queue.consume(self._on_message)))
        log.info("consuming tool calls", extra={"pools": ",".join(pools)})

    async def serve_catalog(self) -> None:
        body = encode(Catalog(tools=self.registry.descriptors()))

        async def answer(request: bytes) -> bytes:
            CatalogRequested.model_validate_json(request)  # garbage is logged and dropped
            return body

        self._catalog_rpc = await self.bus.serve_rpc(self.bus.topology.tool_catalog_queue, answer)

    async def stop(self, grace: float) -> None:
        """Stop taking calls, give running ones `grace` seconds, then kill what is left."""
        self._draining = True
        if self._catalog_rpc is not None:
            with contextlib.suppress(Exception):
                await self._catalog_rpc.cancel()
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self._consumers.clear()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:
                task.cancel()  # the child is killed; the unacked call is requeued on close
            await asyncio.gather(*late, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # A task of our own per call, so that stop() can wait for the calls in hand, then cancel them.
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("tool call task failed", exc_info=task.exception())

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            request = ToolRequested.model_validate_json(message.body)
        except ValidationError as exc:
            log.warning("malformed tool request dead-lettered", extra={"error": str(exc)[:500]})
            await message.reject(requeue=False)
            return
        with bind_context(
            turn_id=request.turn_id, call_id=request.call_id, conversation_id=request.scope.conversation_id
        ):
            async with self._slots:
                if self._draining:  # arrived while stopping: another worker takes it
                    await message.nack(requeue=True)
                    return
                completed = await self._call(request)
            await self._reply(message, completed)

    async def _call(self, request: ToolRequested) -> ToolCompleted:
        started = time.monotonic()
        tool = self.registry.get(request.tool)
        if tool is None:
            completed, label = failure(request.tool, "unknown_tool", f"no tool named {request.tool!r}"), "unknown"
        elif time.time() > request.deadline:
            completed, label = failure(tool.name, "deadline_exceeded", "the caller stopped waiting"), tool.name
        else:
            label = tool.name
            TOOL_CALLS_IN_FLIGHT.inc()
            try:
                completed = await self.executor.run(tool, request.arguments)
            except Exception:
                log.exception("tool executor failed")
                completed = failure(tool.name, "crashed", "the tool runner failed to run the tool")
            finally:
                TOOL_CALLS_IN_FLIGHT.dec()
        completed = completed.model_copy(update={"call_id": request.call_id, "tool": request.tool})
        outcome = "ok" if completed.ok else completed.error.code if completed.error else "failed"
        TOOL_CALLS.labels(tool=label, outcome=outcome).inc()
        TOOL_CALL_DURATION.labels(tool=label).observe(time.monotonic() - started)
        log.info(
            "tool call finished",
            extra={"tool": request.tool, "outcome": outcome, "duration_ms": completed.duration_ms},
        )
        return completed

    async def _reply(self, message: AbstractIncomingMessage, completed: ToolCompleted) -> None:
        """At most one reply: a result the caller cannot receive is not worth a re-run."""
        try:
            if message.reply_to:
                await self.bus.publish(
                    "",
                    message.reply_to,
                    encode(completed),
                    persistent=False,
                    correlation_id=message.correlation_id,
                )
            else:
                log.warning("tool request without reply_to; result dropped")
        except Exception:
            log.exception("could not publish the tool result")
        try:
            await message.ack()
        except Exception:
            log.exception("could not ack the tool request")
