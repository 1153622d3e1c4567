"""The user's approval of destructive tool calls, kept by memory so it outlives a crash.

A decision reaches the waiting reasoner as a control broadcast; the waiter also asks
memory every second, so a broadcast missed during a reconnect only costs that second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentry_shared.bus import Bus
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import (
    Approval,
    GetApproval,
    RequestApproval,
)
from agentry_shared.contracts.scope import Scope

from agentry_reasoner.agent import TurnAborted
from agentry_reasoner.broker_ports import memory_call

POLL_S = 1.0


class ApprovalBoard:
    """Decisions heard on the control exchange, by (turn_id, call_id), for the calls this
    replica waits on. Every replica hears every decision (a fanout), and a call may be
    decided after its wait ended (a second answer, a late one): those are dropped, or the
    board would keep them for good."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._decisions: dict[tuple[str, str], bool] = {}

    def expect(self, turn_id: str, call_id: str) -> None:
        """A decision on this call will be waited for: keep it when it comes."""
        self._events.setdefault((turn_id, call_id), asyncio.Event())

    def decided(self, turn_id: str, call_id: str, approved: bool) -> None:
        key = (turn_id, call_id)
        event = self._events.get(key)
        if event is None:
            return  # not waited on here: another replica's call, or its wait ended
        self._decisions[key] = approved
        event.set()

    async def wait(self, turn_id: str, call_id: str, timeout_s: float) -> bool | None:
        key = (turn_id, call_id)
        event = self._events.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return None
        return self._decisions.get(key)

    def forget(self, turn_id: str, call_id: str) -> None:
        self._events.pop((turn_id, call_id), None)
        self._decisions.pop((turn_id, call_id), None)


class BrokerApprovals:
    def __init__(self, bus: Bus, board: ApprovalBoard, scope: Scope, turn_id: str) -> None:
        self._bus = bus
        self._board = board
        self._scope = scope
        self._turn_id = turn_id

    async def _state(self, call_id: str, digest: str) -> str:
        """The call's approval state; `denied` when it was asked for other arguments.

        A resumed turn's model may reuse a call id with new arguments: the decision kept
        under that id was about the arguments the user saw, never these."""
        reply = await memory_call(self._bus, GetApproval(scope=self._scope, turn_id=self._turn_id, call_id=call_id))
        if not isinstance(reply, Approval):
            raise TurnAborted("memory_internal", f"unexpected reply {reply.kind}")
        if reply.args_sha256 is not None and reply.args_sha256 != digest:
            return "denied"
        return reply.state

    async def decision(self, call_id: str, arguments: dict[str, Any]) -> bool | None:
        state = await self._state(call_id, arguments_sha256(arguments))
        return {"approved": True, "denied": False, "expired": False}.get(state)

    async def ask(self, tool: str, call_id: str, arguments: dict[str, Any], timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        digest = arguments_sha256(arguments)
        self._board.expect(self._turn_id, call_id)  # a decision broadcast from now on is kept
        try:
            await memory_call(
                self._bus,
                RequestApproval(
                    scope=self._scope,
                    turn_id=self._turn_id,
                    call_id=call_id,
                    tool=tool,
                    arguments=arguments,
                    expires_at=deadline,
                ),
            )
            while (left := deadline - time.time()) > 0:
                state = await self._state(call_id, digest)
                if state != "pending":
                    return state == "approved"
                heard = await self._board.wait(self._turn_id, call_id, min(POLL_S, left))
                if heard is not None:  # memory kept these arguments' digest (checked above)
                    return heard
            return await self._state(call_id, digest) == "approved"  # memory says expired past the deadline
        finally:
            self._board.forget(self._turn_id, call_id)
