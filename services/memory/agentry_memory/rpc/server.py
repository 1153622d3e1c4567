"""Answers memory requests: every one scoped, every failure a reply, never a crash.

This module parses, dispatches to the family handlers (turns, context, tool_calls,
approvals, budgets, conversations, facts) and turns store refusals into failure replies. The requests with an
effect beyond the store, a cancel and an approval's decision, are broadcast through a
callable given by the wiring (`Broadcast`), so this core needs no broker to be tested;
the clock is injected for the same reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import assert_never

from agentry_shared.contracts.facts import FACT_REQUEST, FactReply, FactRequest
from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    BeginTurn,
    Context,
    GetContext,
    MemoryFailure,
    MemoryReply,
    MemoryRequest,
    TurnBegun,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import bind_context
from pydantic import ValidationError

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.metrics import RPC_DURATION, RPC_REQUESTS
from agentry_memory.rpc.approvals import APPROVAL_REQUESTS, answer_approval_request
from agentry_memory.rpc.budgets import BUDGET_REQUESTS, answer_budget_request
from agentry_memory.rpc.common import Broadcast, first_error
from agentry_memory.rpc.context import CONTEXT_REQUESTS, answer_context_request
from agentry_memory.rpc.conversations import CONVERSATION_REQUESTS, answer_conversation_request
from agentry_memory.rpc.facts import FACT_REQUESTS, answer_fact_request
from agentry_memory.rpc.tool_calls import TOOL_CALL_REQUESTS, answer_tool_call_request
from agentry_memory.rpc.turns import TURN_REQUESTS, answer_turn_request
from agentry_memory.store import Forbidden, Invalid, LimitReached, NotFound, Store

log = logging.getLogger(__name__)

__all__ = ["Broadcast", "MemoryRpc"]


class MemoryRpc:
    def __init__(
        self,
        store: Store,
        window_messages: int,
        *,
        broadcast: Broadcast,
        clock: Callable[[], float] = time.time,
        assembler: ContextAssembler | None = None,
        max_conversations_per_user: int = 0,
    ) -> None:
        self.store = store
        self.window_messages = window_messages
        self.broadcast = broadcast
        self.clock = clock
        self.max_conversations_per_user = max_conversations_per_user  # 0: no limit
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
            reply = MemoryFailure(code="invalid", message=f"invalid request at {first_error(exc)}")
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
            return await self._dispatch(request)
        except Forbidden as exc:
            log.warning("memory request forbidden", extra={"kind": request.kind, "reason": str(exc)})
            return MemoryFailure(code="forbidden", message="this conversation belongs to someone else")
        except NotFound as exc:
            return MemoryFailure(code="not_found", message=str(exc))
        except Invalid as exc:
            return MemoryFailure(code="invalid", message=str(exc))
        except LimitReached as exc:
            log.info("memory request over a limit", extra={"kind": request.kind, "reason": str(exc)})
            limit = self.max_conversations_per_user
            return MemoryFailure(code="limit_reached", message=f"{exc} (MEMORY_MAX_CONVERSATIONS_PER_USER={limit})")
        except Exception:
            log.exception("memory request failed", extra={"kind": request.kind})
            return MemoryFailure(code="internal", message="the memory service failed; try again")

    async def _dispatch(self, request: MemoryRequest | FactRequest) -> MemoryReply | FactReply:
        """Hand the request to its family's handler (one module per family)."""
        if isinstance(request, TURN_REQUESTS):
            reply = await answer_turn_request(self.store, request, self.broadcast, self.max_conversations_per_user)
            if isinstance(request, BeginTurn) and request.with_context:
                return await self._with_context(request, reply)
            return reply
        if isinstance(request, CONTEXT_REQUESTS):
            return await answer_context_request(self.store, self.assembler, request)
        if isinstance(request, TOOL_CALL_REQUESTS):
            return await answer_tool_call_request(self.store, request, self.clock)
        if isinstance(request, APPROVAL_REQUESTS):
            return await answer_approval_request(self.store, request, self.broadcast, self.clock)
        if isinstance(request, CONVERSATION_REQUESTS):
            return await answer_conversation_request(self.store, request)
        if isinstance(request, BUDGET_REQUESTS):
            return await answer_budget_request(self.store, request, self.clock)
        if isinstance(request, FACT_REQUESTS):
            return await answer_fact_request(self.store, request, self.clock)
        assert_never(request)

    async def _with_context(self, request: BeginTurn, reply: MemoryReply) -> MemoryReply:
        """A running turn's context in the `TurnBegun` itself (one round trip for both)."""
        if not isinstance(reply, TurnBegun) or reply.state != "running":
            return reply
        context = await answer_context_request(
            self.store, self.assembler, GetContext(scope=request.scope, turn_id=request.turn_id)
        )
        return reply.model_copy(update={"context": context}) if isinstance(context, Context) else reply


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
