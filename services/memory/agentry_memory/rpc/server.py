"""Answers memory requests: every one scoped, every failure a reply, never a crash.

The requests with an effect beyond the store, a cancel and an approval's decision, are
broadcast through a callable given by the wiring (`Broadcast`), so this core needs no
broker to be tested; the clock is injected for the same reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import assert_never

from agentry_shared.contracts.control import ApprovalDecided, CancelRequested, ControlMessage
from agentry_shared.contracts.facts import (
    FACT_REQUEST,
    FactReply,
    FactRequest,
    ListTasks,
    RecallFacts,
    RememberFact,
    UpdateTask,
)
from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    AppendMessages,
    Approval,
    BeginTurn,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    ClaimToolCall,
    CompleteToolCall,
    Context,
    DecideApproval,
    Done,
    Frames,
    GetApproval,
    GetContext,
    GetFrames,
    MemoryFailure,
    MemoryReply,
    MemoryRequest,
    RecordReasoning,
    RequestApproval,
    TakeToolToken,
    ToolCallClaimed,
    ToolToken,
    TurnBegun,
    TurnCancelAccepted,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from agentry_shared.logs import bind_context
from pydantic import ValidationError

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.metrics import RPC_DURATION, RPC_REQUESTS
from agentry_memory.rpc.facts import answer_fact_request
from agentry_memory.store import Store
from agentry_memory.store.errors import Forbidden, Invalid, NotFound

log = logging.getLogger(__name__)

# Sends a control message to every reasoner and tool-runner (the control exchange).
Broadcast = Callable[[ControlMessage], Awaitable[None]]


class MemoryRpc:
    def __init__(
        self,
        store: Store,
        window_messages: int,
        *,
        broadcast: Broadcast,
        clock: Callable[[], float] = time.time,
        assembler: ContextAssembler | None = None,
    ) -> None:
        self.store = store
        self.window_messages = window_messages
        self.broadcast = broadcast
        self.clock = clock
        # Without one: the last `window_messages` messages, no budget, summary or facts.
        self.assembler = assembler or ContextAssembler(store, window_messages=window_messages)

    async def handle(self, body: bytes) -> bytes:
        """The `bus.serve_rpc` handler: request bytes in, `MemoryReply` JSON out."""
        started = time.perf_counter()
        kind = "unknown"
        reply: MemoryReply | FactReply
        request: MemoryRequest | FactRequest
        try:
            request = _parse(body)
        except ValidationError as exc:
            reply = MemoryFailure(code="invalid", message=f"invalid request at {_first_error(exc)}")
        else:
            kind = request.kind.removeprefix("memory.")
            scope: Scope | None = getattr(request, "scope", None)  # not every request has one
            with bind_context(
                conversation_id=scope.conversation_id if scope else None, turn_id=getattr(request, "turn_id", None)
            ):
                reply = await self.answer(request)
        outcome = reply.code if isinstance(reply, MemoryFailure) else "ok"
        RPC_REQUESTS.labels(kind=kind, outcome=outcome).inc()
        RPC_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
        return reply.model_dump_json().encode()

    async def answer(self, request: MemoryRequest | FactRequest) -> MemoryReply | FactReply:
        try:
            if isinstance(request, FACT_REQUEST_TYPES):
                return await answer_fact_request(self.store, request, self.clock)
            return await self._dispatch(request)
        except Forbidden as exc:
            log.warning("memory request forbidden", extra={"kind": request.kind, "reason": str(exc)})
            return MemoryFailure(code="forbidden", message="this conversation belongs to someone else")
        except NotFound as exc:
            return MemoryFailure(code="not_found", message=str(exc))
        except Invalid as exc:
            return MemoryFailure(code="invalid", message=str(exc))
        except Exception:
            log.exception("memory request failed", extra={"kind": request.kind})
            return MemoryFailure(code="internal", message="the memory service failed; try again")

    async def _dispatch(self, request: MemoryRequest) -> MemoryReply:
        store = self.store
        match request:
            case ClaimConversation(scope=scope):
                return Claimed(created=await store.claim_conversation(scope))
            case GetContext(scope=scope, turn_id=turn_id):
                context = await self.assembler.assemble(scope, turn_id)
                return Context(messages=context.messages, produced=context.produced)
            case AppendMessages(scope=scope, turn_id=turn_id, messages=messages):
                await store.append_messages(scope, turn_id, messages)
                return Done()
            case RecordReasoning(scope=scope, turn_id=turn_id, step=step, text=text):
                await store.record_reasoning(scope, turn_id, step, text)
                return Done()
            case GetFrames(scope=scope, after_seq=after_seq, limit=limit):
                return Frames(frames=await store.frames_after(scope, after_seq, limit))
            case BeginTurn(scope=scope, turn_id=turn_id):
                attempt, state = await store.begin_turn(scope, turn_id)
                if attempt > 1:
                    log.info("turn taken again", extra={"attempt": attempt, "state": state})
                return TurnBegun(attempt=attempt, state=state)
            case CancelTurnRequest():
                return await self._cancel(request)
            case ClaimToolCall(scope=scope, turn_id=turn_id, call_id=call_id, tool=tool):
                claim = await store.claim_tool_call(scope, turn_id, call_id, tool)
                return ToolCallClaimed(
                    state=claim.state, claimed_seconds_ago=claim.claimed_seconds_ago, result=claim.result
                )
            case CompleteToolCall(scope=scope, turn_id=turn_id, call_id=call_id, result=result):
                # Kept results are handed to resumed turns as ToolCompleted: refuse anything else now.
                try:
                    completed = ToolCompleted.model_validate(result)
                except ValidationError as exc:
                    return MemoryFailure(code="invalid", message=f"result is not a ToolCompleted: {_first_error(exc)}")
                if completed.call_id != call_id:
                    return MemoryFailure(code="invalid", message="result.call_id differs from call_id")
                await store.complete_tool_call(scope, turn_id, call_id, result)
                return Done()
            case RequestApproval(scope=scope, turn_id=turn_id, call_id=call_id, tool=tool):
                await store.request_approval(scope, turn_id, call_id, tool, request.arguments, request.expires_at)
                return Done()
            case GetApproval(scope=scope, turn_id=turn_id, call_id=call_id):
                # Never asked reads `pending`: the reasoner asks before requesting, to learn
                # whether a resumed turn was already decided, and only acts on a decision.
                known = await store.approval(scope, turn_id, call_id, self.clock())
                return Approval(
                    conversation_id=scope.conversation_id, turn_id=turn_id, call_id=call_id, state=known or "pending"
                )
            case DecideApproval():
                return await self._decide(request)
            case TakeToolToken(scope=scope, tool=tool, per_minute=per_minute):
                taken = await store.take_tool_token(scope, tool, per_minute, self.clock())
                return ToolToken(allowed=taken.allowed, retry_after_seconds=taken.retry_after_seconds)
        assert_never(request)

    async def _decide(self, request: DecideApproval) -> MemoryReply:
        """Record, then broadcast to the waiting reasoner. A broadcast that fails is only
        logged: the decision is kept and the reasoner also polls `GetApproval` every second,
        so the user is told what was recorded rather than asked to click again."""
        record = await self.store.decide_approval(
            request.tenant_id, request.user_id, request.call_id, request.approved, self.clock()
        )
        with bind_context(conversation_id=record.conversation_id, turn_id=record.turn_id):
            if record.changed:
                decided = ApprovalDecided(
                    conversation_id=record.conversation_id,
                    turn_id=record.turn_id,
                    call_id=record.call_id,
                    approved=record.state == "approved",
                )
                try:
                    await self.broadcast(decided)
                except Exception:
                    log.warning("approval decision not broadcast; the reasoner polls for it", exc_info=True)
            log.info("approval decided", extra={"call_id": record.call_id, "state": record.state})
        return Approval(
            conversation_id=record.conversation_id, turn_id=record.turn_id, call_id=record.call_id, state=record.state
        )

    async def _cancel(self, request: CancelTurnRequest) -> MemoryReply:
        """Record first, then broadcast: a reasoner that begins the turn after the record sees
        it, one that holds it already hears the broadcast. A failed broadcast is `internal`,
        and a retry records nothing new and broadcasts again."""
        before = await self.store.cancel_turn(request.tenant_id, request.user_id, request.turn_id)
        with bind_context(conversation_id=before.conversation_id):
            if before.state in ("queued", "running"):
                await self.broadcast(CancelRequested(conversation_id=before.conversation_id, turn_id=request.turn_id))
            log.info("turn cancel requested", extra={"state": before.state})
        return TurnCancelAccepted(conversation_id=before.conversation_id, state=before.state)


FACT_REQUEST_TYPES = (RememberFact, RecallFacts, UpdateTask, ListTasks)


def _parse(body: bytes) -> MemoryRequest | FactRequest:
    """A shared memory request, or one of the fact requests this service adds (their own
    union until they move to the shared contracts)."""
    try:
        return MEMORY_REQUEST.validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "union_tag_invalid":
            raise
        try:
            return FACT_REQUEST.validate_json(body)
        except ValidationError as fact_exc:
            if fact_exc.errors()[0]["type"] == "union_tag_invalid":
                raise exc from None  # a kind neither knows: say so with the shared kinds
            raise


def _first_error(exc: ValidationError) -> str:
    """Where and what, e.g. `scope.user_id: Field required`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where or 'body'}: {first['msg']}"
