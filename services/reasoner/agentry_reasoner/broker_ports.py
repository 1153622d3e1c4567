"""The agent loop's ports over RabbitMQ: events to the conversation log, memory and tools by RPC."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from agentry_shared.bus import Bus, RpcTimeout
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.errors import MEMORY_TURN_FAILURE
from agentry_shared.contracts.events import EventPosted, EventsPosted, PostedEvent, TurnCheckpoint
from agentry_shared.contracts.frames import ServerFrame, TurnCompleted
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AppendMessages,
    BeginTurn,
    Context,
    GetContext,
    MemoryFailure,
    MemoryReply,
    RecordReasoning,
    StepReasoning,
    TakeToolToken,
    ToolToken,
    TurnBegun,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import (
    TOOL_REPLY,
    Catalog,
    CatalogRequested,
    ToolCompleted,
    ToolDescriptor,
    ToolError,
    ToolRequested,
)
from pydantic import BaseModel

from agentry_reasoner.agent import TurnAborted

log = logging.getLogger(__name__)

MEMORY_TIMEOUT_S = 10.0


class HandedBack(Exception):
    """The broker took the turn back (our connection was lost): this attempt must stop and
    publish nothing more; the redelivered turn is resumed from its checkpoint."""


# Frames that go out at once; the others wait up to `linger_s` for company.
URGENT: Final = frozenset({"message.delta", "message.reset", "tool.approval_required", "turn.completed", "turn.failed"})


class BrokerEvents:
    """Publishes a turn's frames to its conversation's log partition, in order, without
    waiting for each confirm: one entry is in flight at a time, and the frames emitted
    meanwhile go together in the next (`EventsPosted`), so a turn is a few log entries and
    the agent loop never waits on the broker. Answer text, a reset, an approval request
    and the turn's end go at once (with whatever waits before them); the other frames
    (turn and thinking started, tool progress, and the last text of a model stream, which
    the turn's end follows at once) wait up to `linger_s` for the next, so the frames of a
    quick model step or tool call, or an answer's end and the turn's, share one entry.
    `flush` waits until everything emitted is confirmed: the turn is acked only after it.
    A publish that failed is raised by the next `emit` or by `flush`.

    Event ids make redelivery harmless: memory keeps the first seq of an id. `turn.started`
    and the terminal frame have one id per turn, so however many attempts a turn takes
    (a replica died holding it), the client sees each of them once.
    """

    def __init__(
        self,
        bus: Bus,
        scope: Scope,
        turn_id: str,
        attempt: int,
        traceparent: str | None,
        still_ours: Callable[[], bool] = lambda: True,
        linger_s: float = 0.0,
    ) -> None:
        self._bus = bus
        self._linger = linger_s
        self._urgent = asyncio.Event()
        self._attempt = attempt
        self._still_ours = still_ours
        self._scope = scope
        self._turn_id = turn_id
        self._traceparent = traceparent
        self._routing_key = str(bus.topology.partition(scope.conversation_id))
        self._next = 0
        self._ready: list[PostedEvent] = []  # emitted, not yet published
        self._checkpoint: TurnCheckpoint | None = None  # goes with the entry of the turn's end
        self._sender: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def emit(self, frame: ServerFrame, *, hold: bool = False) -> None:
        self._raise_failure()
        if not self._still_ours():
            raise HandedBack(self._turn_id)
        self._next += 1
        if frame.type == "turn.started":
            event_id = f"{self._turn_id}:started"
        elif frame.type in ("turn.completed", "turn.failed"):
            event_id = f"{self._turn_id}:end"
        else:
            event_id = f"{self._turn_id}:{self._attempt}:{self._next}"
        self._ready.append(PostedEvent(event_id=event_id, frame=frame))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        if frame.type in URGENT and not hold:
            self._urgent.set()
            # Two turns of the event loop: the sender takes the batch and queues its frames,
            # then the connection writes them. Without them a model stream that is already
            # buffered would be read to its end before the first delta went out.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def complete(self, frame: TurnCompleted, messages: list[ChatMessage], reasoning: Mapping[int, str]) -> None:
        """The end goes in an entry with the final checkpoint: memory stores the answer in
        the commit before it sequences `turn.completed` (no `AppendMessages` round trip)."""
        steps = [StepReasoning(step=step, text=text) for step, text in reasoning.items()]
        self._checkpoint = TurnCheckpoint(messages=list(messages), reasoning=steps)
        await self.emit(frame)

    async def flush(self) -> None:
        """Returns once every frame emitted so far is confirmed by the broker."""
        self._urgent.set()
        if self._sender is not None:
            await asyncio.shield(self._sender)
        self._raise_failure()

    async def close(self) -> None:
        """Stop publishing (the attempt ended without `flush`, or failed)."""
        self._ready.clear()
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _send(self) -> None:
        try:
            while self._ready:
                if self._linger > 0 and not self._urgent.is_set():
                    # A timer, not wait_for: an urgent frame wakes this task in one loop turn.
                    timer = asyncio.get_running_loop().call_later(self._linger, self._urgent.set)
                    try:
                        await self._urgent.wait()
                    finally:
                        timer.cancel()
                self._urgent.clear()
                if not self._still_ours():
                    raise HandedBack(self._turn_id)
                batch, self._ready = self._ready, []
                await self._bus.publish(self._bus.topology.log_exchange, self._routing_key, self._entry(batch))
        except Exception as exc:
            self._failure = exc
            self._ready.clear()
        finally:
            self._sender = None

    def _entry(self, batch: list[PostedEvent]) -> bytes:
        checkpoint = None
        if self._checkpoint is not None and batch[-1].event_id == f"{self._turn_id}:end":
            checkpoint, self._checkpoint = self._checkpoint, None
        if len(batch) == 1 and checkpoint is None:  # the single-frame kind every memory version reads
            [one] = batch
            return (
                EventPosted(
                    scope=self._scope,
                    turn_id=self._turn_id,
                    event_id=one.event_id,
                    frame=one.frame,
                    traceparent=self._traceparent,
                )
                .model_dump_json()
                .encode()
            )
        return (
            EventsPosted(
                scope=self._scope,
                turn_id=self._turn_id,
                events=batch,
                traceparent=self._traceparent,
                checkpoint=checkpoint,
            )
            .model_dump_json()
            .encode()
        )


async def memory_call(bus: Bus, request: BaseModel, *, accept_unsupported: bool = False) -> MemoryReply:
    """One memory RPC for the turn: no answer or a refusal ends in TurnAborted (code
    `memory_<why>`), which the consumer retries in place. `accept_unsupported` hands back an
    `unsupported` failure instead (a memory version without that request)."""
    try:
        body = await bus.request(bus.topology.memory_rpc, request.model_dump_json().encode(), timeout=MEMORY_TIMEOUT_S)
    except RpcTimeout as exc:
        raise TurnAborted("memory_unavailable", "The memory service did not answer in time.") from exc
    reply = MEMORY_REPLY.validate_json(body)
    if isinstance(reply, MemoryFailure) and not (accept_unsupported and reply.code == "unsupported"):
        raise TurnAborted(MEMORY_TURN_FAILURE[reply.code], reply.message)
    return reply


class BrokerMemory:
    def __init__(self, bus: Bus, scope: Scope, turn_id: str) -> None:
        self._bus = bus
        self._scope = scope
        self._turn_id = turn_id
        self._context: Context | None = None  # came with TurnBegun: no GetContext needed

    async def _call(self, request: BaseModel) -> MemoryReply:
        return await memory_call(self._bus, request)

    async def begin(self, first: TurnBegun | None = None) -> TurnBegun:
        """`first`: memory began the turn as it forwarded it (attempt 1, with its context),
        and this is that delivery's first try; otherwise one `BeginTurn` round trip."""
        if first is not None:
            self._context = first.context
            return first
        reply = await self._call(BeginTurn(scope=self._scope, turn_id=self._turn_id, with_context=True))
        if not isinstance(reply, TurnBegun):
            raise TurnAborted("memory_internal", f"unexpected reply {reply.kind}")
        self._context = reply.context
        return reply

    async def context(self) -> Context:
        if self._context is not None:
            context, self._context = self._context, None
            return context
        reply = await self._call(GetContext(scope=self._scope, turn_id=self._turn_id))
        if not isinstance(reply, Context):
            raise TurnAborted("memory_internal", f"unexpected reply {reply.kind}")
        return reply

    async def append(self, messages: list[ChatMessage], reasoning: Mapping[int, str] | None = None) -> None:
        steps = [StepReasoning(step=step, text=text) for step, text in (reasoning or {}).items()]
        await self._call(AppendMessages(scope=self._scope, turn_id=self._turn_id, messages=messages, reasoning=steps))

    async def record_reasoning(self, step: int, text: str) -> None:
        await self._call(RecordReasoning(scope=self._scope, turn_id=self._turn_id, step=step, text=text))


class CatalogCache:
    """The tool catalog comes from the tool-runners, refreshed every `ttl_s`."""

    def __init__(self, bus: Bus, ttl_s: float = 30.0) -> None:
        self._bus = bus
        self._ttl = ttl_s
        self._tools: list[ToolDescriptor] = []
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> list[ToolDescriptor]:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._ttl:
                return self._tools
            try:
                body = await self._bus.request(
                    self._bus.topology.tool_catalog, CatalogRequested().model_dump_json().encode(), timeout=3.0
                )
            except RpcTimeout:
                log.warning("no tool-runner answered the catalog request; this turn runs without tools")
                return self._tools
            reply = TOOL_REPLY.validate_json(body)
            if isinstance(reply, Catalog):
                self._tools, self._fetched_at = reply.tools, time.monotonic()
            return self._tools


class BrokerTools:
    def __init__(
        self,
        bus: Bus,
        catalog: CatalogCache,
        scope: Scope,
        turn_id: str,
        timeout_s: float,
        traceparent: str | None,
        per_minute: int = 0,
    ) -> None:
        self._bus = bus
        self._per_minute = per_minute
        self._catalog = catalog
        self._scope = scope
        self._turn_id = turn_id
        self._timeout = timeout_s
        self._traceparent = traceparent

    async def catalog(self) -> list[ToolDescriptor]:
        return await self._catalog.get()

    async def take_token(self, tool: ToolDescriptor) -> float:
        request = TakeToolToken(scope=self._scope, tool=tool.name, per_minute=self._per_minute)
        reply = await memory_call(self._bus, request, accept_unsupported=True)
        if isinstance(reply, MemoryFailure):
            return 0.0  # a memory version without rate limits (rolling upgrade): let the call go
        if not isinstance(reply, ToolToken):
            raise TurnAborted("memory_internal", f"unexpected reply {reply.kind}")
        return 0.0 if reply.allowed else max(reply.retry_after_seconds, 1.0)

    async def call(self, tool: ToolDescriptor, call_id: str, arguments: dict[str, Any]) -> ToolCompleted:
        timeout = min(self._timeout, tool.timeout_seconds + 5.0)
        request = ToolRequested(
            scope=self._scope,
            turn_id=self._turn_id,
            call_id=call_id,
            tool=tool.name,
            arguments=arguments,
            deadline=time.time() + timeout,
            traceparent=self._traceparent,
        )
        try:
            body = await self._bus.request(
                self._bus.topology.tool_pool(tool.pool), request.model_dump_json().encode(), timeout=timeout
            )
        except RpcTimeout:
            return ToolCompleted(
                call_id=call_id,
                tool=tool.name,
                ok=False,
                error=ToolError(code="timeout", message=f"No result from {tool.name} within {timeout:.0f}s."),
            )
        reply = TOOL_REPLY.validate_json(body)
        if not isinstance(reply, ToolCompleted):
            return ToolCompleted(
                call_id=call_id, tool=tool.name, ok=False, error=ToolError(code="failed", message="bad reply")
            )
        return reply
