"""What a client can make memory hold is bounded: integers (past 2^53 memory answers
`invalid`, a caller mistake, never `internal`, which callers retry), conversations (only
new, server-issued ids are created, at most MEMORY_MAX_CONVERSATIONS_PER_USER per user, and
one the gateway created for a message it then refused is deleted again)."""

from __future__ import annotations

import json

import pytest
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import Forbidden, LimitReached, NotFound, Store
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AbandonConversation,
    Abandoned,
    ClaimConversation,
    Claimed,
    MemoryFailure,
    MemoryReply,
)
from agentry_shared.contracts.scope import Scope
from pydantic import BaseModel


async def _ignore(_: ControlMessage) -> None:
    return None


@pytest.mark.parametrize("after_seq", [2**63, 2**63 - 1, 2**64, -1])
async def test_get_frames_after_seq_out_of_range_is_invalid(store: Store, scope: Scope, after_seq: int) -> None:
    rpc = MemoryRpc(store, window_messages=40, broadcast=_ignore)
    await rpc.handle(ClaimConversation(scope=scope, new=True).model_dump_json().encode())
    body = {"kind": "memory.get_frames", "scope": scope.model_dump(), "after_seq": after_seq}
    reply = MEMORY_REPLY.validate_json(await rpc.handle(json.dumps(body).encode()))
    assert isinstance(reply, MemoryFailure) and reply.code == "invalid", reply
    assert "after_seq" in reply.message


async def test_a_claim_of_an_unknown_conversation_creates_nothing(store: Store, scope: Scope) -> None:
    with pytest.raises(NotFound):
        await store.claim_conversation(scope, create=False)
    with pytest.raises(NotFound):
        await store.claim_conversation(scope, create=False)  # still nothing: the first created nothing
    assert await store.claim_conversation(scope) is True
    assert await store.claim_conversation(scope, create=False) is False
    with pytest.raises(Forbidden):
        await store.claim_conversation(scope.model_copy(update={"user_id": "mallory"}), create=False)


async def test_conversations_per_user_are_bounded(store: Store, scope: Scope) -> None:
    def nth(n: int, user: str = scope.user_id) -> Scope:
        return scope.model_copy(update={"conversation_id": f"c{user}{n}", "user_id": user})

    for n in range(3):
        assert await store.claim_conversation(nth(n), max_conversations=3) is True
    with pytest.raises(LimitReached):
        await store.claim_conversation(nth(3), max_conversations=3)
    assert await store.claim_conversation(nth(0), max_conversations=3) is False  # an existing one is fine
    assert await store.claim_conversation(nth(0, "bob"), max_conversations=3) is True  # per user
    with pytest.raises(NotFound):
        await store.claim_conversation(nth(3), create=False)


async def test_rpc_creates_only_new_conversations_and_names_the_limit(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=40, broadcast=_ignore, max_conversations_per_user=1)

    async def ask(request: ClaimConversation) -> MemoryReply:
        return MEMORY_REPLY.validate_json(await rpc.handle(request.model_dump_json().encode()))

    unknown = await ask(ClaimConversation(scope=scope))
    assert isinstance(unknown, MemoryFailure) and unknown.code == "not_found"
    assert await ask(ClaimConversation(scope=scope, new=True)) == Claimed(created=True)
    assert await ask(ClaimConversation(scope=scope)) == Claimed(created=False)
    over = await ask(ClaimConversation(scope=scope.model_copy(update={"conversation_id": "second"}), new=True))
    assert isinstance(over, MemoryFailure) and over.code == "limit_reached"
    assert "MEMORY_MAX_CONVERSATIONS_PER_USER" in over.message


async def test_an_abandoned_conversation_without_a_turn_is_gone_and_frees_its_place(store: Store, scope: Scope) -> None:
    """The gateway abandons a conversation it created for a message it then refused (a turn
    budget, `unavailable`): an empty one is deleted and no longer counts toward the limit;
    one with a turn (the publish went through after all) is kept; another user's is not theirs."""
    assert await store.claim_conversation(scope, max_conversations=1) is True
    with pytest.raises(Forbidden):
        await store.abandon_conversation(scope.model_copy(update={"user_id": "mallory"}))
    assert await store.abandon_conversation(scope) is True
    with pytest.raises(NotFound):
        await store.claim_conversation(scope, create=False)
    assert await store.list_conversations(scope.tenant_id, scope.user_id, 10) == []
    assert await store.abandon_conversation(scope) is True  # again: still gone
    other = scope.model_copy(update={"conversation_id": f"{scope.conversation_id}-2"})
    assert await store.claim_conversation(other, max_conversations=1) is True  # its place is free
    await store.add_turn(other, "t-1", ChatMessage(role="user", content="hello"))
    assert await store.abandon_conversation(other) is False
    assert await store.claim_conversation(other, create=False) is False  # kept, with its turn


async def test_rpc_abandons_a_conversation(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=40, broadcast=_ignore)

    async def ask(request: BaseModel) -> MemoryReply:
        return MEMORY_REPLY.validate_json(await rpc.handle(request.model_dump_json().encode()))

    assert await ask(ClaimConversation(scope=scope, new=True)) == Claimed(created=True)
    assert await ask(AbandonConversation(scope=scope)) == Abandoned(removed=True)
    gone = await ask(ClaimConversation(scope=scope))
    assert isinstance(gone, MemoryFailure) and gone.code == "not_found"
