"""The gateway's requests to the memory service: claim (and abandon), cancel, fetch frames,
decide approvals, list a user's conversations.

Every failure becomes `Rejected` with the error code the client gets; the socket stays
open. Waits are bounded, and while the broker is known to be down the answer is
`unavailable` at once: a robust channel would otherwise wait for the reconnect, and the
client would hang instead of hearing that it should retry.

Requests go through `Bus.request`, whose reply consumer is restored with its robust
channel after a reconnect (tested through a cut TCP relay in `tests/test_outage.py`). A
request that meets a channel being closed or restored is sent again within the same
deadline; every request here is idempotent (claim, abandon, cancel, read frames or the list, decide approval:
deciding again the same way gets the same answer).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agentry_shared.bus import Bus, RpcTimeout, encode
from agentry_shared.contracts.frames import Approve, ConversationSummary
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AbandonConversation,
    Abandoned,
    AdmitTurn,
    Approval,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    Conversations,
    DecideApproval,
    Frames,
    GetFrames,
    ListConversations,
    MemoryFailure,
    MemoryReply,
    TurnAdmission,
    TurnBudgets,
    TurnCancelAccepted,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.topology import RpcTarget
from aio_pika.exceptions import ChannelClosed, ChannelInvalidStateError
from pydantic import BaseModel, ValidationError

from agentry_gateway import broker
from agentry_gateway.inbound import (
    BUDGET_EXCEEDED,
    CONVERSATION_LIMIT,
    FORBIDDEN,
    NOT_FOUND,
    RATE_LIMITED,
    UNAVAILABLE,
    Rejected,
)

log = logging.getLogger(__name__)

_ATTEMPTS = 3
_RETRY_PAUSE = 0.05


class MemoryClient:
    def __init__(self, bus: Bus, *, timeout: float = 5.0) -> None:
        self._bus = bus
        self._timeout = timeout
        self._started = False

    def start(self) -> None:
        """Once the bus is fully connected (`Bus.connect` returned). Before, a request could
        make `Bus.request` open its reply channel on a connection that `broker.connect_until_up`
        then throws away (declaring failed), and `Bus` keeps that channel for good."""
        self._started = True

    def close(self) -> None:
        self._started = False

    async def claim(self, scope: Scope, *, new: bool = False) -> bool:
        """Check the conversation is this user's (`not_found`, `forbidden`); `new`: create it
        first (True: it was created now), for an id the gateway has just issued."""
        reply = await self._call(ClaimConversation(scope=scope, new=new))
        if isinstance(reply, Claimed):
            return reply.created
        raise self._refusal(reply, "claim")

    async def abandon(self, scope: Scope) -> bool:
        """Delete a conversation `claim(new=True)` created for a message that was then
        refused, so the refusal leaves nothing behind; False: memory kept it, a turn is in it."""
        reply = await self._call(AbandonConversation(scope=scope))
        if isinstance(reply, Abandoned):
            return reply.removed
        raise self._refusal(reply, "abandon_conversation")

    async def admit(self, scope: Scope, turn_id: str, budgets: TurnBudgets) -> None:
        """Count the turn against the user's and the tenant's budgets, or refuse it
        (`rate_limited`, `budget_exceeded`, with when to retry) before it is published."""
        reply = await self._call(AdmitTurn(scope=scope, turn_id=turn_id, budgets=budgets))
        if not isinstance(reply, TurnAdmission):
            raise self._refusal(reply, "admit_turn")
        if not reply.allowed:
            code = BUDGET_EXCEEDED if reply.code == "budget_exceeded" else RATE_LIMITED
            message = f"over {reply.limit}: the message was not accepted; send it again after retry_after_ms"
            raise Rejected(code, message, retry_after=reply.retry_after_seconds)

    async def cancel(self, tenant_id: str, user_id: str, turn_id: str) -> TurnCancelAccepted:
        """Ask memory to cancel a turn; it broadcasts the cancel to the reasoners itself."""
        reply = await self._call(CancelTurnRequest(tenant_id=tenant_id, user_id=user_id, turn_id=turn_id))
        if isinstance(reply, TurnCancelAccepted):
            return reply
        raise self._refusal(reply, "cancel")

    async def decide(self, tenant_id: str, user_id: str, frame: Approve) -> Approval:
        """Record the user's answer to `tool.approval_required` (the call of that turn, for
        the arguments of that digest); memory tells the waiting reasoner. The reply is the
        call's approval as recorded (maybe decided before, or not at all for another digest)."""
        decide = DecideApproval(
            tenant_id=tenant_id,
            user_id=user_id,
            conversation_id=frame.conversation_id,
            turn_id=frame.turn_id,
            call_id=frame.call_id,
            args_sha256=frame.args_sha256,
            approved=frame.approved,
        )
        reply = await self._call(decide)
        if isinstance(reply, Approval):
            return reply
        raise self._refusal(reply, "decide_approval")

    async def frames(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored frames with seq > after_seq, ascending, at most `limit`."""
        reply = await self._call(GetFrames(scope=scope, after_seq=after_seq, limit=limit))
        if isinstance(reply, Frames):
            return reply.frames
        raise self._refusal(reply, "get_frames")

    async def conversations(self, tenant_id: str, user_id: str, limit: int) -> list[ConversationSummary]:
        """The user's conversations, the most recently active first, at most `limit`."""
        reply = await self._call(ListConversations(tenant_id=tenant_id, user_id=user_id, limit=limit))
        if isinstance(reply, Conversations):
            return reply.conversations
        raise self._refusal(reply, "list_conversations")

    @staticmethod
    def _refusal(reply: MemoryReply, what: str) -> Rejected:
        if isinstance(reply, MemoryFailure):
            if reply.code == "forbidden":
                return Rejected(FORBIDDEN, "this conversation belongs to another user")
            if reply.code == "not_found":
                return Rejected(NOT_FOUND, reply.message or "not found")
            if reply.code == "limit_reached":
                return Rejected(CONVERSATION_LIMIT, reply.message or "MEMORY_MAX_CONVERSATIONS_PER_USER reached")
        log.warning("unexpected memory reply", extra={"request": what, "reply": reply.model_dump_json()})
        return Rejected(UNAVAILABLE, "the memory service could not answer; retry")

    async def _call(self, request: BaseModel) -> MemoryReply:
        if not self._started or not broker.connected(self._bus):
            raise Rejected(UNAVAILABLE, "the broker is unavailable; retry")
        target, body = self._bus.topology.memory_rpc, encode(request)
        try:
            # The outer bound also covers a broker that drops while we wait (request would block).
            async with asyncio.timeout(self._timeout + 1.0):
                raw = await self._send(target, body)
            return MEMORY_REPLY.validate_json(raw)
        except (RpcTimeout, TimeoutError) as exc:
            log.warning("the memory service did not answer", extra={"kind": getattr(request, "kind", None)})
            raise Rejected(UNAVAILABLE, "the memory service did not answer; retry") from exc
        except ValidationError as exc:
            log.error("unreadable reply from the memory service", exc_info=True)
            raise Rejected(UNAVAILABLE, "the memory service answered nonsense; retry") from exc
        except Exception as exc:
            log.warning("memory request failed", exc_info=True)
            raise Rejected(UNAVAILABLE, "the broker is unavailable; retry") from exc

    async def _send(self, target: RpcTarget, body: bytes) -> bytes:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._bus.request(target, body, timeout=self._timeout)
            except (ChannelClosed, ChannelInvalidStateError):
                if attempt == _ATTEMPTS:
                    raise
                log.info("memory request hit a closed channel; sending again", extra={"attempt": attempt})
                await asyncio.sleep(_RETRY_PAUSE)
        raise AssertionError("unreachable")
