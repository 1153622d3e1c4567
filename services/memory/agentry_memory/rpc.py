"""Answers memory requests: every one scoped, every failure a reply, never a crash."""

from __future__ import annotations

import logging
import time
from typing import assert_never

from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    AppendMessages,
    ClaimConversation,
    Claimed,
    Context,
    Done,
    Frames,
    GetContext,
    GetFrames,
    MemoryFailure,
    MemoryReply,
    MemoryRequest,
    RecordReasoning,
)
from agentry_shared.logs import bind_context
from pydantic import ValidationError

from agentry_memory.errors import Forbidden, NotFound
from agentry_memory.metrics import RPC_DURATION, RPC_REQUESTS
from agentry_memory.store import Store

log = logging.getLogger(__name__)


class MemoryRpc:
    def __init__(self, store: Store, window_messages: int) -> None:
        self.store = store
        self.window_messages = window_messages

    async def handle(self, body: bytes) -> bytes:
        """The `bus.serve_rpc` handler: request bytes in, `MemoryReply` JSON out."""
        started = time.perf_counter()
        kind = "unknown"
        reply: MemoryReply
        try:
            request = MEMORY_REQUEST.validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            reply = MemoryFailure(code="invalid", message=f"invalid request at {where or 'body'}: {first['msg']}")
        else:
            kind = request.kind.removeprefix("memory.")
            with bind_context(conversation_id=request.scope.conversation_id, turn_id=getattr(request, "turn_id", None)):
                reply = await self.answer(request)
        outcome = reply.code if isinstance(reply, MemoryFailure) else "ok"
        RPC_REQUESTS.labels(kind=kind, outcome=outcome).inc()
        RPC_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
        return reply.model_dump_json().encode()

    async def answer(self, request: MemoryRequest) -> MemoryReply:
        try:
            return await self._dispatch(request)
        except Forbidden as exc:
            log.warning("memory request forbidden", extra={"kind": request.kind, "reason": str(exc)})
            return MemoryFailure(code="forbidden", message="this conversation belongs to someone else")
        except NotFound as exc:
            return MemoryFailure(code="not_found", message=str(exc))
        except Exception:
            log.exception("memory request failed", extra={"kind": request.kind})
            return MemoryFailure(code="internal", message="the memory service failed; try again")

    async def _dispatch(self, request: MemoryRequest) -> MemoryReply:
        store, scope = self.store, request.scope
        match request:
            case ClaimConversation():
                return Claimed(created=await store.claim_conversation(scope))
            case GetContext(turn_id=turn_id):
                return Context(messages=await store.context(scope, turn_id, self.window_messages))
            case AppendMessages(turn_id=turn_id, messages=messages):
                await store.append_messages(scope, turn_id, messages)
                return Done()
            case RecordReasoning(turn_id=turn_id, step=step, text=text):
                await store.record_reasoning(scope, turn_id, step, text)
                return Done()
            case GetFrames(after_seq=after_seq, limit=limit):
                return Frames(frames=await store.frames_after(scope, after_seq, limit))
        assert_never(request)
