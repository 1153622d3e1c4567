"""Consumes turns from every partition and runs each through the agent loop.

Each `turns.<p>` queue has a single active consumer across all replicas and a prefetch
of one, so a conversation's turns run one at a time, in the order they were accepted.
The message is acked only after the turn's last frame is confirmed: a replica that dies
mid-turn leaves it to the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agentry_shared.bus import Bus
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.logs import bind_context
from agentry_shared.settings import ReasonerSettings
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from pydantic import ValidationError

from agentry_reasoner.agent import Budget, Turn
from agentry_reasoner.broker_ports import BrokerEvents, BrokerMemory, BrokerTools, CatalogCache
from agentry_reasoner.metrics import TURN_SECONDS, TURNS, TURNS_IN_FLIGHT
from agentry_reasoner.model import Model

log = logging.getLogger(__name__)


class TurnConsumer:
    def __init__(self, bus: Bus, model: Model, settings: ReasonerSettings) -> None:
        self.bus = bus
        self.model = model
        self.settings = settings
        self.catalog = CatalogCache(bus)
        self.budget = Budget(
            max_steps=settings.reasoner_max_steps,
            max_tool_calls=settings.reasoner_max_tool_calls_per_turn,
            delta_interval_s=settings.reasoner_delta_interval_ms / 1000,
            delta_max_chars=settings.reasoner_delta_max_chars,
        )
        self._channel: AbstractRobustChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._channel = await self.bus.channel(prefetch=1)
        topology = self.bus.topology
        for p in range(topology.partitions):
            queue = await self.bus.declare_work_queue(
                self._channel, topology.turns_queue(p), topology.turns_exchange, str(p), single_active=True
            )
            tag = await queue.consume(self._on_message)
            self._consumers.append((queue, tag))

    async def stop(self, grace_s: float) -> None:
        """Take no new turn; give the ones in hand `grace_s` to finish, then hand them back."""
        for queue, tag in self._consumers:
            await queue.cancel(tag)
        self._consumers.clear()
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=grace_s)
            for task in pending:
                task.cancel()  # not acked: the broker redelivers the turn to another replica
            await asyncio.gather(*pending, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._handle(message)
        finally:
            self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            turn = TurnRequested.model_validate_json(message.body)
        except ValidationError as exc:
            log.error("dropping malformed turn to the dead-letter queue", extra={"error": str(exc)[:500]})
            await message.reject(requeue=False)
            return
        with bind_context(turn_id=turn.turn_id, conversation_id=turn.scope.conversation_id):
            TURNS_IN_FLIGHT.inc()
            started = time.monotonic()
            try:
                outcome = await self._run(turn)
            finally:
                TURNS_IN_FLIGHT.dec()
            TURN_SECONDS.observe(time.monotonic() - started)
            TURNS.labels(outcome).inc()
            await message.ack()
            elapsed_ms = int((time.monotonic() - started) * 1000)
            log.info("turn finished", extra={"outcome": outcome, "elapsed_ms": elapsed_ms})

    async def _run(self, request: TurnRequested) -> str:
        scope, turn_id = request.scope, request.turn_id
        events = BrokerEvents(self.bus, scope, turn_id, request.traceparent)
        turn = Turn(
            conversation_id=scope.conversation_id,
            turn_id=turn_id,
            system_prompt=self.settings.reasoner_system_prompt,
            model=self.model,
            memory=BrokerMemory(self.bus, scope, turn_id),
            tools=BrokerTools(
                self.bus, self.catalog, scope, turn_id, self.settings.reasoner_tool_timeout_seconds, request.traceparent
            ),
            events=events,
            budget=self.budget,
        )
        try:
            async with asyncio.timeout(self.settings.reasoner_turn_deadline_seconds):
                outcome = await turn.run()
        except TimeoutError:
            limit = self.settings.reasoner_turn_deadline_seconds
            await turn.fail("deadline_exceeded", f"The turn did not finish within its deadline of {limit:.0f}s.")
            return "deadline_exceeded"
        except Exception as exc:
            log.exception("turn crashed")
            await turn.fail("internal", f"The agent failed unexpectedly ({type(exc).__name__}).")
            return "internal"
        return "completed" if outcome.ok else (outcome.code or "failed")
