"""Answers the approval requests: the reasoner asks for one and reads it, the gateway
decides it for the user, and a decision is broadcast to the waiting reasoner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import assert_never

from agentry_shared.contracts.control import ApprovalDecided
from agentry_shared.contracts.memory import (
    Approval,
    DecideApproval,
    Done,
    GetApproval,
    MemoryReply,
    RequestApproval,
)
from agentry_shared.logs import bind_context

from agentry_memory.rpc.common import Broadcast
from agentry_memory.store import ApprovalAnswer, Invalid, Store

log = logging.getLogger(__name__)

ApprovalRequest = RequestApproval | GetApproval | DecideApproval
APPROVAL_REQUESTS = (RequestApproval, GetApproval, DecideApproval)


async def answer_approval_request(
    store: Store, request: ApprovalRequest, broadcast: Broadcast, clock: Callable[[], float]
) -> MemoryReply:
    match request:
        case RequestApproval(scope=scope, turn_id=turn_id, call_id=call_id, tool=tool):
            await store.request_approval(scope, turn_id, call_id, tool, request.arguments, request.expires_at)
            return Done()
        case GetApproval(scope=scope, turn_id=turn_id, call_id=call_id):
            # Never asked reads `pending`: the reasoner asks before requesting, to learn
            # whether a resumed turn was already decided, and only acts on a decision.
            known = await store.approval(scope, turn_id, call_id, clock())
            return Approval(
                conversation_id=scope.conversation_id,
                turn_id=turn_id,
                call_id=call_id,
                state=known.state if known else "pending",
                args_sha256=known.args_sha256 if known else None,
            )
        case DecideApproval():
            return await _decide(store, request, broadcast, clock)
    assert_never(request)


async def _decide(
    store: Store, request: DecideApproval, broadcast: Broadcast, clock: Callable[[], float]
) -> MemoryReply:
    """Record, then broadcast to the waiting reasoner. A broadcast that fails is only
    logged: the decision is kept and the reasoner also polls `GetApproval` every second,
    so the user is told what was recorded rather than asked to click again.

    A call id alone is ambiguous (models reuse them across turns and conversations): a
    request without its turn and arguments digest, from an older gateway, is refused."""
    if request.turn_id is None or request.args_sha256 is None:
        raise Invalid("decide_approval needs turn_id and args_sha256: a call_id alone names no single call")
    answer = ApprovalAnswer(
        tenant_id=request.tenant_id,
        user_id=request.user_id,
        turn_id=request.turn_id,
        call_id=request.call_id,
        args_sha256=request.args_sha256,
        approved=request.approved,
        conversation_id=request.conversation_id,
    )
    record = await store.decide_approval(answer, clock())
    with bind_context(conversation_id=record.conversation_id, turn_id=record.turn_id):
        if record.changed:
            decided = ApprovalDecided(
                conversation_id=record.conversation_id,
                turn_id=record.turn_id,
                call_id=record.call_id,
                approved=record.state == "approved",
            )
            try:
                await broadcast(decided)
            except Exception:
                log.warning("approval decision not broadcast; the reasoner polls for it", exc_info=True)
        if record.args_sha256 != answer.args_sha256:
            log.warning("approval refused: arguments digest differs", extra={"call_id": record.call_id})
        else:
            log.info("approval decided", extra={"call_id": record.call_id, "state": record.state})
    return Approval(
        conversation_id=record.conversation_id,
        turn_id=record.turn_id,
        call_id=record.call_id,
        state=record.state,
        args_sha256=record.args_sha256,
    )
