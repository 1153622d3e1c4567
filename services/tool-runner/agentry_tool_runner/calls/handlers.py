"""The broker side: tool calls from `tools.<pool>` queues, cancels, and the catalog RPC.

Calls run as tasks so one slow tool does not hold up the others (lifecycle.py bounds how
many children run). Replies go to the caller's reply queue (the replies exchange) with its correlation id,
after the result is kept in memory; the request is acked last. If the reply or the ack
fails (the connection dropped), that is logged and the broker redelivers the request:
its kept result (`done`) is then replied to the new delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agentry_shared.bus import Bus, Consumer, encode
from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.tools import Catalog, CatalogRequested, ToolCompleted, ToolRequested
from agentry_shared.logs import bind_context
from agentry_shared.recent import RecentTurns
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ConsumerTag
from pydantic import ValidationError

from agentry_tool_runner.calls.claims import ClaimClient, ClaimTiming
from agentry_tool_runner.calls.control import ControlListener
from agentry_tool_runner.calls.decision import REFUSALS
from agentry_tool_runner.calls.lifecycle import Calls
from agentry_tool_runner.execution.executor import Executor, failure
from agentry_tool_runner.metrics import TOOL_CALL_DURATION, TOOL_CALLS
from agentry_tool_runner.tools.registry import Registry, Tool

log = logging.getLogger(__name__)


class ToolCallConsumer:
    def __init__(
        self,
        bus: Bus,
        registry: Registry,
        executor: Executor,
        concurrency: int,
        timing: ClaimTiming | None = None,
        memory: Callable[[Tool], str] | None = None,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.memory = memory  # each tool's memory cap in words, as this worker enforces it
        self.concurrency = concurrency
        timing = timing or ClaimTiming()
        self.calls = Calls(executor, ClaimClient(bus, timing), timing, concurrency)
        self.control = ControlListener(bus, self._on_cancel)
        self.cancelled_turns = RecentTurns()
        self._consumers: list[tuple[AbstractQueue, ConsumerTag]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._catalog_rpc: Consumer | None = None

    async def start(self, pools: list[str]) -> None:
        # Cancels first: a call taken before we listen could not be stopped.
        await self.control.start()
        topology = self.bus.topology
        channel = await self.bus.channel(prefetch=self.concurrency)
        for pool in pools:
            queue = await self.bus.declare_work_queue(
                channel, topology.tool_queue(pool), topology.tools_exchange, routing_key=pool, single_active=False
            )
            self._consumers.append((queue, await queue.consume(self._on_message)))
        log.info("consuming tool calls", extra={"pools": ",".join(pools)})

    async def serve_catalog(self) -> None:
        async def answer(request: bytes) -> bytes:
            # Built per request: MCP servers come and go, and change their tools. A malformed
            # request is logged and still answered, so a caller never waits out its timeout.
            try:
                CatalogRequested.model_validate_json(request)
            except ValidationError:
                log.warning("malformed catalog request answered anyway", extra={"bytes": len(request)})
            return encode(Catalog(tools=self.registry.descriptors(self.memory)))

        self._catalog_rpc = await self.bus.serve_rpc(self.bus.topology.tool_catalog, answer)

    async def stop(self, grace: float) -> None:
        """Stop taking calls, give running ones `grace` seconds, then kill what is left."""
        self.calls.draining = True
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
        await self.control.stop()  # after the grace: calls in hand could still be cancelled

    def _on_cancel(self, cancel: CancelRequested) -> None:
        self.cancelled_turns.add(cancel.turn_id)
        stopped = self.calls.cancel_turn(cancel.turn_id)
        log.info("turn cancelled", extra={"turn_id": cancel.turn_id, "calls_stopped": stopped})

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
        with (
            processing(message.headers, message.exchange, message.routing_key, request.traceparent),
            bind_context(
                turn_id=request.turn_id, call_id=request.call_id, conversation_id=request.scope.conversation_id
            ),
        ):
            try:
                completed = await self._answer(request, redelivered=bool(message.redelivered))
            except Exception:
                # Logged here, where the call's ids are bound (a task's done callback has
                # none of them); handed back, so the broker redelivers it (and dead-letters
                # it after `AGENTRY_DELIVERY_LIMIT` deliveries) instead of holding it unacked.
                log.exception("tool call failed; handed back to the broker", extra={"tool": request.tool})
                completed = None
            if completed is None:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            await self._reply(message, completed)

    async def _answer(self, request: ToolRequested, *, redelivered: bool) -> ToolCompleted | None:
        started = time.monotonic()
        tool = self.registry.get(request.tool)
        label = tool.name if tool is not None else "unknown"
        if tool is None:
            completed = failure(request.tool, "unknown_tool", f"no tool named {request.tool!r}")
        elif time.time() > request.deadline:
            completed = failure(tool.name, "deadline_exceeded", REFUSALS["deadline_exceeded"])
        elif request.turn_id in self.cancelled_turns:
            completed = failure(tool.name, "cancelled", REFUSALS["cancelled"])
        else:
            answered = await self.calls.answer(tool, request, redelivered=redelivered)
            if answered is None:
                return None
            completed = answered
        completed = completed.model_copy(update={"call_id": request.call_id, "tool": request.tool})
        outcome = "ok" if completed.ok else completed.error.code if completed.error else "failed"
        pool = tool.pool if tool is not None else "unknown"
        TOOL_CALLS.labels(tool=label, pool=pool, outcome=outcome).inc()
        TOOL_CALL_DURATION.labels(tool=label, pool=pool).observe(time.monotonic() - started)
        log.info(
            "tool call finished",
            extra={"tool": request.tool, "outcome": outcome, "duration_ms": completed.duration_ms},
        )
        return completed

    async def _reply(self, message: AbstractIncomingMessage, completed: ToolCompleted) -> None:
        """Reply, then ack. Either may fail when the connection dropped meanwhile: logged, and
        the redelivered request is answered from the kept result (or by this runner, if the
        call is still in hand here)."""
        try:
            await self.bus.reply(message, encode(completed))
        except Exception as exc:
            log.error("could not publish the tool result", extra={"error": repr(exc)[:300]})
        try:
            await message.ack()
        except Exception as exc:
            log.error("could not ack the tool request; it will be redelivered", extra={"error": repr(exc)[:300]})
