"""One tool call from request to result: claim it, wait for its holder, run it, keep it.

The order is what makes a crash safe: claim, run, record the result in memory, and only
then reply and ack (handlers.py). A runner that dies anywhere leaves an unacked request,
which the broker hands to another runner with `redelivered`; `decision.decide` says what
that runner does. Pure functions run in the worker (backend "worker") skip the claim and
the record: running one again has no effect.

Calls in hand are listed by (turn_id, call_id): a cancel of the turn cancels the task
that awaits the child (which kills its process group), and a second delivery of a call
this runner is still running (its own request redelivered after a reconnect, or a
resumed turn asking again) waits for that result instead of claiming anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.memory import ToolCallClaimed
from agentry_shared.contracts.tools import ToolCompleted, ToolRequested

from agentry_tool_runner.calls.claims import ClaimClient, ClaimTiming, kept_result
from agentry_tool_runner.calls.decision import REFUSALS, STALE_MARGIN_SECONDS, Decision, decide
from agentry_tool_runner.execution.executor import Executor, failure
from agentry_tool_runner.metrics import TOOL_CALL_CLAIMS, TOOL_CALLS_IN_FLIGHT
from agentry_tool_runner.tools.tool import Tool

log = logging.getLogger(__name__)

_CALLER_GONE = Decision("refuse", "deadline passed while waiting", code="deadline_exceeded")


@dataclass(eq=False)
class Call:
    request: ToolRequested
    # What every delivery of this call replies; None: handed back to the queue.
    result: asyncio.Future[ToolCompleted | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    work: asyncio.Task[ToolCompleted | None] | None = None
    holds_claim: bool = False  # memory has us as the holder: a cancel is recorded there
    settled: bool = False  # the outcome is known: a cancel would only throw it away
    cancelled: bool = False

    def cancel(self) -> bool:
        if self.settled or self.work is None or self.work.done():
            return False
        self.cancelled = self.work.cancel()
        return self.cancelled


class Calls:
    def __init__(self, executor: Executor, claims: ClaimClient, timing: ClaimTiming, concurrency: int) -> None:
        self.executor = executor
        self.claims = claims
        self.timing = timing
        # Bounds the children (prefetch alone would not: it is per consumer, a worker may
        # serve several pools). Held while claiming and running, not while waiting.
        self._slots = asyncio.Semaphore(concurrency)
        self._calls: dict[tuple[str, str], Call] = {}
        self.draining = False

    def cancel_turn(self, turn_id: str) -> int:
        """Stops every call of the turn in hand; returns how many were stopped."""
        return sum(call.cancel() for call in list(self._calls.values()) if call.request.turn_id == turn_id)

    async def answer(self, tool: Tool, request: ToolRequested, *, redelivered: bool) -> ToolCompleted | None:
        """The call's result; None when the request should go back to the queue (stopping)."""
        holder = self._calls.get((request.turn_id, request.call_id))
        if holder is not None:
            log.info("call already in hand here; waiting for its result")
            return await asyncio.shield(holder.result)
        call = Call(request)
        self._calls[(request.turn_id, request.call_id)] = call
        completed: ToolCompleted | None = None
        try:
            call.work = asyncio.create_task(self._settle(call, tool, redelivered))
            try:
                completed = await call.work
            except asyncio.CancelledError:
                if not call.cancelled or _being_cancelled():
                    raise  # stopping: the child is dead, the unacked request goes back
                completed = self._refusal(tool, request, "cancelled")
                if call.holds_claim:
                    await self.claims.complete(request, completed)
            return completed
        finally:
            del self._calls[(request.turn_id, request.call_id)]
            if not call.result.done():
                call.result.set_result(completed)

    async def _settle(self, call: Call, tool: Tool, redelivered: bool) -> ToolCompleted | None:
        request = call.request
        async with self._slots:
            if self.draining:  # arrived while stopping: another worker takes it
                return None
            if tool.backend == "worker":
                # A pure function of its arguments: a second run has no effect, so it is
                # neither claimed nor kept (two memory round trips less per call).
                completed = await self._run(tool, request)
                call.settled = True
                return completed
            claim, decision = await self._claim(tool, request, redelivered, waited=0.0)
            if decision.action != "wait":
                return await self._act(call, tool, claim, decision)
        claim, decision = await self._wait(tool, request, redelivered)
        if decision.action != "run":
            return await self._act(call, tool, claim, decision)
        async with self._slots:  # no draining check: handing it back now would read as our death
            return await self._act(call, tool, claim, decision)

    async def _claim(
        self, tool: Tool, request: ToolRequested, redelivered: bool, waited: float
    ) -> tuple[ToolCallClaimed | None, Decision]:
        claim = await self.claims.claim(request)
        stale_after = tool.timeout_seconds + STALE_MARGIN_SECONDS
        decision = decide(claim, tool.side_effect, redelivered=redelivered, stale_after=stale_after, waited=waited)
        return claim, decision

    async def _wait(
        self, tool: Tool, request: ToolRequested, redelivered: bool
    ) -> tuple[ToolCallClaimed | None, Decision]:
        """Polls the claim until its holder finishes or counts as dead, or the caller leaves."""
        TOOL_CALL_CLAIMS.labels(decision="wait").inc()
        log.info("call held by another runner; waiting for it")
        started = time.monotonic()
        while True:
            if time.time() > request.deadline:
                return None, _CALLER_GONE
            await asyncio.sleep(self.timing.poll_interval)
            claim, decision = await self._claim(tool, request, redelivered, waited=time.monotonic() - started)
            if decision.action != "wait":
                return claim, decision

    async def _act(self, call: Call, tool: Tool, claim: ToolCallClaimed | None, decision: Decision) -> ToolCompleted:
        request = call.request
        TOOL_CALL_CLAIMS.labels(decision=decision.action).inc()
        # The usual case (a fresh claim, so it runs) is one line per call: debug; the rest are news.
        level = logging.DEBUG if decision.why == "claimed" else logging.INFO
        log.log(level, "claim decided", extra={"decision": decision.action, "why": decision.why})
        if decision.action == "reply_kept" and claim is not None:
            return kept_result(claim).model_copy(update={"call_id": request.call_id, "tool": request.tool})
        if decision.action == "run":
            call.holds_claim = decision.keep
            completed = await self._run(tool, request)
        else:
            completed = self._refusal(tool, request, decision.code or "unavailable")
        call.settled = True
        if decision.keep:
            await self.claims.complete(request, completed)
        return completed

    async def _run(self, tool: Tool, request: ToolRequested) -> ToolCompleted:
        TOOL_CALLS_IN_FLIGHT.inc()
        try:
            completed = await self.executor.run(tool, request.arguments, request.scope)
        except Exception:
            log.exception("tool executor failed")
            completed = failure(tool.name, "crashed", "the tool runner failed to run the tool")
        finally:
            TOOL_CALLS_IN_FLIGHT.dec()
        return completed.model_copy(update={"call_id": request.call_id, "tool": request.tool})

    @staticmethod
    def _refusal(tool: Tool, request: ToolRequested, code: ToolErrorCode) -> ToolCompleted:
        message = REFUSALS[code]
        if code == "cancelled" and tool.side_effect == "destructive":
            message += "; it may or may not have taken effect"
        return failure(tool.name, code, message).model_copy(update={"call_id": request.call_id})


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
