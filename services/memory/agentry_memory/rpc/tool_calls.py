"""Answers the tool-runner's requests: claiming and completing a tool call (so it runs
once), and taking a token of a tool's per-minute rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from agentry_shared.contracts.memory import (
    ClaimToolCall,
    CompleteToolCall,
    Done,
    MemoryFailure,
    MemoryReply,
    TakeToolToken,
    ToolCallClaimed,
    ToolToken,
)
from agentry_shared.contracts.tools import ToolCompleted
from pydantic import ValidationError

from agentry_memory.rpc.common import first_error
from agentry_memory.store import Store

ToolCallRequest = ClaimToolCall | CompleteToolCall | TakeToolToken
TOOL_CALL_REQUESTS = (ClaimToolCall, CompleteToolCall, TakeToolToken)


async def answer_tool_call_request(store: Store, request: ToolCallRequest, clock: Callable[[], float]) -> MemoryReply:
    match request:
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
                return MemoryFailure(code="invalid", message=f"result is not a ToolCompleted: {first_error(exc)}")
            if completed.call_id != call_id:
                return MemoryFailure(code="invalid", message="result.call_id differs from call_id")
            await store.complete_tool_call(scope, turn_id, call_id, result)
            return Done()
        case TakeToolToken(scope=scope, tool=tool, per_minute=per_minute):
            taken = await store.take_tool_token(scope, tool, per_minute, clock())
            return ToolToken(allowed=taken.allowed, retry_after_seconds=taken.retry_after_seconds)
    assert_never(request)
