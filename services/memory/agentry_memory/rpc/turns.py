"""Answers the requests about a conversation's turns: claiming (or abandoning) the conversation, beginning
and cancelling a turn, recording its reasoning.

A cancel is recorded before it is broadcast, so a reasoner that begins the turn later
sees the record and one that holds it already hears the broadcast.
"""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.memory import (
    AbandonConversation,
    Abandoned,
    BeginTurn,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    Done,
    MemoryReply,
    RecordReasoning,
    TurnBegun,
    TurnCancelAccepted,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import bind_context

from agentry_memory.rpc.common import Broadcast
from agentry_memory.store import Store

log = logging.getLogger(__name__)

# How long BeginTurn waits for an earlier turn's end to be sequenced (see earlier_turns_ended).
EARLIER_TURN_WAIT_SECONDS = 2.0
EARLIER_TURN_POLL_SECONDS = 0.002

TurnRequest = ClaimConversation | AbandonConversation | BeginTurn | CancelTurnRequest | RecordReasoning
TURN_REQUESTS = (ClaimConversation, AbandonConversation, BeginTurn, CancelTurnRequest, RecordReasoning)


async def answer_turn_request(
    store: Store, request: TurnRequest, broadcast: Broadcast, max_conversations: int = 0
) -> MemoryReply:
    match request:
        case ClaimConversation(scope=scope, new=new):
            # Only a new (gateway-issued) id is created; naming an unknown one is `not_found`.
            created = await store.claim_conversation(scope, create=new, max_conversations=max_conversations)
            return Claimed(created=created)
        case AbandonConversation(scope=scope):
            # The gateway refused the message it created the conversation for.
            removed = await store.abandon_conversation(scope)
            log.info("new conversation abandoned" if removed else "abandoned conversation kept: it has a turn")
            return Abandoned(removed=removed)
        case RecordReasoning(scope=scope, turn_id=turn_id, step=step, text=text):
            await store.record_reasoning(scope, turn_id, step, text)
            return Done()
        case BeginTurn(scope=scope, turn_id=turn_id):
            await earlier_turns_ended(store, scope, turn_id)
            attempt, state = await store.begin_turn(scope, turn_id)
            if attempt > 1:
                log.info("turn taken again", extra={"attempt": attempt, "state": state})
            return TurnBegun(attempt=attempt, state=state)
        case CancelTurnRequest():
            return await _cancel(store, request, broadcast)
    assert_never(request)


async def earlier_turns_ended(
    store: Store, scope: Scope, turn_id: str, *, wait: float = EARLIER_TURN_WAIT_SECONDS
) -> None:
    """Return once no earlier turn of the conversation is running, or after `wait`.

    A turn's answer is stored with its `turn.completed`, in the log, and the reasoner
    starts the next turn once that entry is confirmed, not once memory has sequenced it:
    this `BeginTurn` may overtake it. Waiting here keeps the answer in the next turn's
    context. Bounded, so a turn whose end never comes (its dead letter not yet handled)
    delays the next by `wait`, never for ever."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + wait, EARLIER_TURN_POLL_SECONDS
    while await store.earlier_turn_running(scope, turn_id):
        if loop.time() >= deadline:
            log.warning("an earlier turn is still running; beginning anyway", extra={"waited_s": wait})
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


async def _cancel(store: Store, request: CancelTurnRequest, broadcast: Broadcast) -> MemoryReply:
    """Record first, then broadcast: a reasoner that begins the turn after the record sees
    it, one that holds it already hears the broadcast. A failed broadcast is `internal`,
    and a retry records nothing new and broadcasts again."""
    before = await store.cancel_turn(request.tenant_id, request.user_id, request.turn_id)
    with bind_context(conversation_id=before.conversation_id):
        if before.state in ("queued", "running"):
            await broadcast(CancelRequested(conversation_id=before.conversation_id, turn_id=request.turn_id))
        log.info("turn cancel requested", extra={"state": before.state})
    return TurnCancelAccepted(conversation_id=before.conversation_id, state=before.state)
