"""The claim RPCs to memory, reduced to what the decision needs.

Anything short of a usable answer (no reply in time, the broker connection down, a
`MemoryFailure`, a kept result that is not a `ToolCompleted`) counts as "memory
unavailable": `decide` then runs only what is safe to run twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from agentry_shared.bus import Bus, RpcTimeout, encode
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    ClaimToolCall,
    CompleteToolCall,
    Done,
    MemoryFailure,
    MemoryReply,
    ToolCallClaimed,
)
from agentry_shared.contracts.tools import ToolCompleted, ToolRequested
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimTiming:
    # One claim or complete RPC; past it, memory counts as unavailable.
    memory_timeout: float = 3.0
    # How often a call held by another runner is looked at again.
    poll_interval: float = 0.25
    # How long to keep trying to record a result (a reconnect takes ~5 s).
    complete_budget: float = 20.0


def kept_result(claim: ToolCallClaimed) -> ToolCompleted:
    """The result of a `done` claim (`ClaimClient.claim` only returns parseable ones)."""
    return ToolCompleted.model_validate(claim.result)


class ClaimClient:
    def __init__(self, bus: Bus, timing: ClaimTiming) -> None:
        self.bus = bus
        self.timing = timing

    async def claim(self, request: ToolRequested) -> ToolCallClaimed | None:
        """The call's claim (first caller gets `new`), or None when memory is unavailable."""
        ask = ClaimToolCall(scope=request.scope, turn_id=request.turn_id, call_id=request.call_id, tool=request.tool)
        reply = await self._ask(ask)
        if not isinstance(reply, ToolCallClaimed):
            if reply is not None:
                log.warning("memory refused the claim", extra={"reply": reply.model_dump_json()[:300]})
            return None
        if reply.state == "done":
            try:
                kept_result(reply)
            except ValidationError:
                log.error("memory kept a result that is not a ToolCompleted; treated as unavailable")
                return None
        return reply

    async def complete(self, request: ToolRequested, completed: ToolCompleted) -> bool:
        """Record the result; retried for a while, since losing it means a re-run or a
        refusal later. False (and an error log) if it could not be recorded."""
        record = CompleteToolCall(
            scope=request.scope, turn_id=request.turn_id, call_id=request.call_id, result=completed.model_dump()
        )
        give_up = time.monotonic() + self.timing.complete_budget
        pause = 0.25
        while True:
            reply = await self._ask(record)
            if isinstance(reply, Done):
                return True
            if isinstance(reply, MemoryFailure) and reply.code != "internal":
                break  # refused for good (forbidden, invalid): retrying will not help
            if time.monotonic() + pause > give_up:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        log.error("the tool call's result could not be kept", extra={"reply": str(reply)[:300]})
        return False

    async def _ask(self, request: BaseModel) -> MemoryReply | None:
        timeout = self.timing.memory_timeout
        target = self.bus.topology.memory_rpc
        try:
            # The outer bound also covers opening the RPC channel while the connection is down.
            raw = await asyncio.wait_for(self.bus.request(target, encode(request), timeout=timeout), timeout + 1)
            return MEMORY_REPLY.validate_json(raw)
        except (RpcTimeout, TimeoutError):
            log.warning("memory did not answer", extra={"timeout": timeout})
        except ValidationError as exc:
            log.error("memory answered something unreadable", extra={"error": str(exc)[:300]})
        except Exception as exc:  # the broker connection is down, the channel closed, ...
            log.warning("could not ask memory", extra={"error": repr(exc)[:300]})
        return None
