"""Consumes the turns of this replica's partitions and runs each through the agent loop.

Replicas share the `turns.<p>` partitions (agentry_shared.partitions decides who holds
which); each partition this replica holds has a channel of its own. Turns of a partition
arrive in the order they were accepted; several are taken at once and run under a FIFO
lock per conversation: one turn of a conversation at a time, in order, while other
conversations go on. A turn is acked only after its last frame is confirmed.

Letting a partition go (it moved to another replica, or this one stops) never cancels
the consumer first: that would make the broker activate the next subscriber while turns
are still in hand here. Instead no new turn of it starts, the running ones finish (or are
handed back when the time is up), and then its channel closes, which returns what is
left in queue order and activates the new owner in one step. A replica that dies leaves
its unacked turns to the next owner the same way, which resumes each from its checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from agentry_shared.bus import Bus
from agentry_shared.contracts.control import CONTROL_MESSAGE, ApprovalDecided
from agentry_shared.contracts.memory import RecordUsage, TurnBegun
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.logs import bind_context
from agentry_shared.partitions import PartitionShare
from agentry_shared.recent import RecentTurns
from agentry_shared.settings import ReasonerSettings
from agentry_shared.tracing import processing
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from pydantic import ValidationError

from agentry_reasoner.agent import Budget, Turn, TurnAborted
from agentry_reasoner.approvals import ApprovalBoard, BrokerApprovals
from agentry_reasoner.broker_ports import (
    BrokerEvents,
    BrokerMemory,
    BrokerTools,
    CatalogCache,
    HandedBack,
    memory_call,
)
from agentry_reasoner.metrics import PARTITIONS_OWNED, REBALANCES, TURN_SECONDS, TURNS, TURNS_IN_FLIGHT
from agentry_reasoner.model import Model
from agentry_reasoner.ports import Events
from agentry_reasoner.usage import TURN_TOKENS, TokenTally, UsageReporting

log = logging.getLogger(__name__)

# How far memory's clock may be ahead of ours when we compare `TurnRequested.begun_at` with
# the time we started hearing cancels (NTP keeps pods within milliseconds).
CLOCK_SKEW_SECONDS = 0.25


@dataclass
class Partition:
    """One held `turns.<p>`: its own channel, so closing it hands back exactly its turns."""

    number: int
    channel: AbstractRobustChannel
    draining: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class TurnConsumer:
    def __init__(self, bus: Bus, model: Model, settings: ReasonerSettings) -> None:
        self.bus = bus
        self.model = model
        self.settings = settings
        self.catalog = CatalogCache(bus)
        self.budget = Budget(
            max_steps=settings.reasoner_max_steps,
            max_tool_calls=settings.reasoner_max_tool_calls_per_turn,
            max_parallel_tool_calls=settings.reasoner_max_parallel_tool_calls,
            tool_calls_per_minute=settings.reasoner_tool_calls_per_minute,
            approval_timeout_s=settings.reasoner_approval_timeout_seconds,
            delta_interval_s=settings.reasoner_delta_interval_ms / 1000,
            delta_max_interval_s=settings.reasoner_delta_max_interval_ms / 1000,
            delta_max_chars=settings.reasoner_delta_max_chars,
        )
        self._channel: AbstractRobustChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._partitions: dict[int, Partition] = {}
        self.share = PartitionShare(
            bus,
            "reasoner",
            settings,
            acquire=self._acquire,
            release=self._release,
            owned=PARTITIONS_OWNED,
            rebalances=REBALANCES,
        )
        self._running: dict[str, asyncio.Task[Any]] = {}  # turn_id -> the task running it
        self._cancel_requested: set[str] = set()
        # Every cancel heard, held or not: a turn memory forwarded begun is trusted only if
        # its cancel, had there been one, would be here (see _first_begun).
        self._recent_cancels = RecentTurns()
        # Since when (Unix time) the control queue has been consumed without a break; +inf
        # while the broker connection is down.
        self._listening_since = math.inf
        # Turns whose task may be cancelled for a user's cancel: only while the agent runs.
        # Cancelled elsewhere (asking memory to begin, a retry's pause), the task would end
        # without settling its delivery and the partition would stall on it for good.
        self._cancellable: set[str] = set()
        # Bumped when the broker connection is lost: a delivery from an older generation has
        # been taken back by the broker, and its attempt must stop (see HandedBack).
        self._generation = 0
        self._conversation_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, turns using it
        self._stopping = False
        self._release_grace = settings.shutdown_grace_seconds
        self.approvals = ApprovalBoard()

    async def start(self) -> None:
        self._channel = await self.bus.channel(prefetch=self.settings.reasoner_prefetch_per_partition)
        topology = self.bus.topology
        control = await self._channel.declare_queue(
            f"{topology.namespace}.reasoner.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
        )
        await control.bind(topology.control_exchange)
        self._consumers.append((control, await control.consume(self._on_control, no_ack=True)))
        self._listening_since = time.time()
        assert self.bus.connection is not None
        self.bus.connection.close_callbacks.add(self._on_connection_lost)
        self.bus.connection.reconnect_callbacks.add(self._on_reconnected)  # after channels are restored
        await self.share.start()

    async def stop(self, grace_s: float) -> None:
        """Take no new turn; give the ones in hand `grace_s` to finish, then hand them back."""
        self._stopping = True
        self._release_grace = grace_s
        await self.share.stop()
        for queue, tag in self._consumers:
            await queue.cancel(tag)
        self._consumers.clear()
        if self._channel is not None:
            await self._channel.close()

    async def _acquire(self, p: int) -> None:
        """Subscribe to turns.<p>; under single active consumer this waits (on the broker)
        until the previous owner has closed its channel."""
        topology = self.bus.topology
        channel = await self.bus.channel(prefetch=self.settings.reasoner_prefetch_per_partition)
        partition = Partition(p, channel)
        queue = await self.bus.declare_work_queue(
            channel, topology.turns_queue(p), topology.turns_exchange, str(p), single_active=True
        )
        self._partitions[p] = partition

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_message(partition, message)

        await queue.consume(on_message)

    async def _release(self, p: int) -> None:
        """Finish the running turns of partition p (hand back those still running after the
        grace), then close its channel: the broker returns the rest, in order, to the next owner."""
        partition = self._partitions[p]
        partition.draining = True
        grace = self._release_grace if self._stopping else self.settings.reasoner_turn_deadline_seconds
        if partition.tasks:
            _, pending = await asyncio.wait(set(partition.tasks), timeout=grace)
            for task in pending:
                task.cancel()  # not acked: the next owner resumes it from its checkpoint
            await asyncio.gather(*pending, return_exceptions=True)
        del self._partitions[p]
        try:
            await partition.channel.close()
        except Exception as exc:
            log.warning("closing a turns channel failed", extra={"partition": p, "error": repr(exc)})

    def _on_connection_lost(self, *_: object) -> None:
        """The broker took back every unacked turn: stop working on them here at once,
        so a turn never runs twice at the same time (it is redelivered, then resumed)."""
        self._listening_since = math.inf  # cancels broadcast from now on are missed
        if self._stopping:
            return
        self._generation += 1
        for turn_id, task in list(self._running.items()):
            log.warning("broker connection lost; handing the turn back", extra={"turn_id": turn_id})
            task.cancel()

    def _on_reconnected(self, *_: object) -> None:
        self._listening_since = time.time()

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        try:
            control = CONTROL_MESSAGE.validate_json(message.body)
        except ValidationError:
            log.warning("ignoring a malformed control message")
            return
        if isinstance(control, ApprovalDecided):
            self.approvals.decided(control.turn_id, control.call_id, control.approved)
            return
        self._recent_cancels.add(control.turn_id)
        task = self._running.get(control.turn_id)
        if task is not None:
            log.info("cancelling turn", extra={"turn_id": control.turn_id})
            self._cancel_requested.add(control.turn_id)
            if control.turn_id in self._cancellable:
                task.cancel()  # otherwise the turn sees the request when the agent starts

    async def _on_message(self, partition: Partition, message: AbstractIncomingMessage) -> None:
        if partition.draining:
            return  # left unacked: the channel's close hands it to the next owner, in order
        try:
            turn = TurnRequested.model_validate_json(message.body)
        except ValidationError as exc:
            log.error("dropping malformed turn to the dead-letter queue", extra={"error": str(exc)[:500]})
            await message.reject(requeue=False)
            return
        task = asyncio.current_task()
        assert task is not None
        partition.tasks.add(task)
        conversation = turn.scope.conversation_id
        lock, users = self._conversation_locks.get(conversation, (asyncio.Lock(), 0))
        self._conversation_locks[conversation] = (lock, users + 1)
        try:
            # Deliveries arrive in queue order and acquiring is the first await: FIFO per conversation.
            async with lock:
                if not partition.draining:
                    await self._handle(message, turn)
        finally:
            partition.tasks.discard(task)
            lock, users = self._conversation_locks[conversation]
            if users == 1:
                del self._conversation_locks[conversation]
            else:
                self._conversation_locks[conversation] = (lock, users - 1)

    async def _handle(self, message: AbstractIncomingMessage, turn: TurnRequested) -> None:
        task = asyncio.current_task()
        assert task is not None
        with (
            processing(message.headers, message.exchange, message.routing_key, turn.traceparent),
            bind_context(turn_id=turn.turn_id, conversation_id=turn.scope.conversation_id),
        ):
            self._running[turn.turn_id] = task
            TURNS_IN_FLIGHT.inc()
            started = time.monotonic()
            generation = self._generation
            first = self._first_begun(turn, redelivered=bool(message.redelivered))
            try:
                outcome = await self._run_until_done(turn, lambda: self._generation == generation, first)
            except HandedBack:
                log.warning("turn handed back unfinished; the broker redelivers it")
                return
            except asyncio.CancelledError:
                log.warning("turn handed back unfinished; the broker redelivers it")
                raise
            finally:
                TURNS_IN_FLIGHT.dec()
                self._running.pop(turn.turn_id, None)
                self._cancel_requested.discard(turn.turn_id)
            TURN_SECONDS.observe(time.monotonic() - started)
            TURNS.labels(outcome).inc()
            await message.ack()
            elapsed_ms = int((time.monotonic() - started) * 1000)
            log.info("turn finished", extra={"outcome": outcome, "elapsed_ms": elapsed_ms})

    def _first_begun(self, turn: TurnRequested, *, redelivered: bool) -> TurnBegun | None:
        """The begin memory sent with the turn, if this replica may use it: on the turn's
        first delivery only (a redelivered one may have been run: memory must count a new
        attempt), with its context, and only if a cancel of it would have been heard here
        (none was, and the control queue has been consumed since before memory began it;
        `CLOCK_SKEW_SECONDS` covers the two clocks). Otherwise: `BeginTurn`."""
        begun = turn.begun
        if begun is None or turn.begun_at is None or redelivered:
            return None
        if begun.state != "running" or begun.context is None or turn.turn_id in self._recent_cancels:
            return None
        if turn.begun_at < self._listening_since + CLOCK_SKEW_SECONDS:
            return None
        return begun

    async def _run_until_done(
        self, turn: TurnRequested, still_ours: Callable[[], bool], first: TurnBegun | None = None
    ) -> str:
        """Memory or the broker failing under a turn is retried in place, with backoff: a
        requeue would let the conversation's next turn overtake this one. Once the broker
        took the delivery back (connection lost), retrying would run the turn twice. A
        retry always begins through memory: it is a new attempt (`first` is for one try)."""
        pause = 0.5
        while True:
            if not still_ours():
                raise HandedBack(turn.turn_id)
            begun, first = first, None
            try:
                return await self._run(turn, still_ours, begun)
            except TurnAborted as exc:
                log.warning("turn could not run; retrying", extra={"code": exc.code, "pause_s": pause})
            except (aio_pika.exceptions.AMQPError, TimeoutError):
                log.warning("broker did not confirm a publish; retrying", exc_info=True, extra={"pause_s": pause})
            except Exception:
                # Never leave a delivery unsettled: that would stall the partition for good.
                log.exception("turn could not run; retrying", extra={"pause_s": pause})
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _run(self, request: TurnRequested, still_ours: Callable[[], bool], first: TurnBegun | None) -> str:
        scope, turn_id = request.scope, request.turn_id
        memory = BrokerMemory(self.bus, scope, turn_id)
        begun = await memory.begin(first)  # TurnAborted if memory is down: retried by the caller
        sender = BrokerEvents(
            self.bus,
            scope,
            turn_id,
            begun.attempt,
            request.traceparent,
            still_ours,
            linger_s=self.budget.delta_interval_s,  # as long as answer text may wait
        )
        try:
            outcome = await self._run_turn(request, memory, begun, sender)
            await sender.flush()  # the turn is acked only once every frame is confirmed
            return outcome
        finally:
            await sender.close()

    async def _run_turn(self, request: TurnRequested, memory: BrokerMemory, begun: TurnBegun, sender: Events) -> str:
        scope, turn_id = request.scope, request.turn_id
        events: Events = sender
        if self.settings.turn_budgets().counts_tokens:
            tally = TokenTally()
            TURN_TOKENS.set(tally)  # this task's context: the turn's model requests count here

            async def report(tokens: int) -> object:
                return await memory_call(self.bus, RecordUsage(scope=scope, turn_id=turn_id, tokens=tokens))

            events = UsageReporting(events, tally, report)
        turn = Turn(
            conversation_id=scope.conversation_id,
            turn_id=turn_id,
            system_prompt=self.settings.reasoner_system_prompt,
            model=self.model,
            memory=memory,
            tools=BrokerTools(
                self.bus,
                self.catalog,
                scope,
                turn_id,
                self.settings.reasoner_tool_timeout_seconds,
                request.traceparent,
                per_minute=self.settings.reasoner_tool_calls_per_minute,
            ),
            events=events,
            budget=self.budget,
            approvals=BrokerApprovals(self.bus, self.approvals, scope, turn_id),
        )
        if turn_id in self._cancel_requested:  # asked while the turn was not yet running
            await turn.fail("cancelled", "The turn was cancelled.")
            return "cancelled"
        self._cancellable.add(turn_id)
        try:
            return await self._run_agent(request, turn, begun)
        finally:
            self._cancellable.discard(turn_id)

    async def _run_agent(self, request: TurnRequested, turn: Turn, begun: TurnBegun) -> str:
        """The agent loop under the turn's deadline; a user's cancel ends it `cancelled`."""
        turn_id = request.turn_id
        limit = self.settings.reasoner_turn_deadline_seconds
        # The deadline runs from acceptance, so a resumed turn does not get a fresh one.
        remaining = limit - (datetime.now(UTC) - request.accepted_at).total_seconds()
        try:
            async with asyncio.timeout(max(0.0, remaining)) as deadline:
                outcome = await turn.run(begun)
        except TimeoutError:
            if not deadline.expired():
                raise  # a publish or an RPC timed out, not the turn: retried by the caller
            self._cancellable.discard(turn_id)  # ending: a cancel now must not cut the end short
            await turn.fail(
                "deadline_exceeded",
                f"The turn did not finish within its deadline of {limit:.0f}s (REASONER_TURN_DEADLINE_SECONDS).",
            )
            return "deadline_exceeded"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if turn_id not in self._cancel_requested or current is None:
                raise
            # A second cancel (the user pressed it again) must not cancel the task while it
            # ends the turn: the end would be cut short and the delivery left unsettled.
            self._cancellable.discard(turn_id)
            while current.uncancel() > 0:  # every cancel heard before the task woke
                pass
            await turn.fail("cancelled", "The turn was cancelled.")
            return "cancelled"
        except (TurnAborted, HandedBack, aio_pika.exceptions.AMQPError):
            raise  # infrastructure trouble: retried by the caller, not a failure of the turn
        except Exception as exc:
            log.exception("turn crashed")
            self._cancellable.discard(turn_id)
            await turn.fail("internal", f"The agent failed unexpectedly ({type(exc).__name__}).")
            return "internal"
        return "completed" if outcome.ok else (outcome.code or "failed")
