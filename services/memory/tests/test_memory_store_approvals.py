"""The `Store` contract for approvals of destructive calls and per-user tool rate limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from agentry_memory.store import TOKEN_WINDOW_SECONDS, ApprovalRecord, Store, TokenTaken, token_window
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope

LATER = time.time() + 3600


async def turn(store: Store, scope: Scope, turn_id: str = "t1") -> None:
    await store.add_turn(scope, turn_id, ChatMessage(role="user", content="delete it"))


async def test_an_approval_is_pending_until_decided_once(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    now = time.time()
    assert await store.approval(scope, "t1", "c1", now) is None
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER)
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER + 60)  # redelivered
    assert await store.approval(scope, "t1", "c1", now) == "pending"
    decided = await store.decide_approval("acme", "alice", "c1", True, now)
    assert decided == ApprovalRecord(scope.conversation_id, "t1", "c1", "approved", changed=True)
    again = await store.decide_approval("acme", "alice", "c1", False, now)  # a second click changes nothing
    assert again == ApprovalRecord(scope.conversation_id, "t1", "c1", "approved", changed=False)
    assert await store.approval(scope, "t1", "c1", now) == "approved"
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER)  # keeps the decision
    assert await store.approval(scope, "t1", "c1", LATER + 10) == "approved"


async def test_a_denial_is_kept(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "python", {}, LATER)
    assert (await store.decide_approval("acme", "alice", "c1", False, time.time())).state == "denied"
    assert await store.approval(scope, "t1", "c1", time.time()) == "denied"


async def test_past_its_expiry_an_approval_is_expired_and_cannot_be_given(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    expires = time.time() + 5
    await store.request_approval(scope, "t1", "c1", "python", {}, expires)
    assert await store.approval(scope, "t1", "c1", expires - 1) == "pending"
    assert await store.approval(scope, "t1", "c1", expires + 1) == "expired"
    late = await store.decide_approval("acme", "alice", "c1", True, expires + 1)
    assert (late.state, late.changed) == ("expired", False)
    assert await store.approval(scope, "t1", "c1", expires - 1) == "expired"  # recorded, not only computed


async def test_a_decision_finds_the_users_newest_approval_of_that_call_id(store: Store, scope: Scope) -> None:
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-b"})
    await turn(store, scope, "t1")
    await turn(store, other, "t2")
    await store.request_approval(scope, "t1", "call_0", "python", {}, LATER)
    await asyncio.sleep(0.01)
    await store.request_approval(other, "t2", "call_0", "python", {}, LATER)  # same model call id, newer
    decided = await store.decide_approval("acme", "alice", "call_0", True, time.time())
    assert (decided.conversation_id, decided.turn_id) == (other.conversation_id, "t2")
    assert await store.approval(scope, "t1", "call_0", time.time()) == "pending"


async def test_approvals_are_scoped(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "python", {}, LATER)
    with pytest.raises(NotFound):  # another user's call id is not found, not forbidden: nothing leaks
        await store.decide_approval("acme", "mallory", "c1", True, time.time())
    with pytest.raises(NotFound):
        await store.decide_approval("other", "alice", "c1", True, time.time())
    with pytest.raises(NotFound):
        await store.decide_approval("acme", "alice", "nope", True, time.time())
    mallory = scope.model_copy(update={"user_id": "mallory"})
    for attempt in (
        store.request_approval(mallory, "t1", "c2", "python", {}, LATER),
        store.approval(mallory, "t1", "c1", time.time()),
    ):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(NotFound):
        await store.request_approval(scope, "nope", "c2", "python", {}, LATER)
    assert await store.approval(scope, "t1", "c1", time.time()) == "pending"


async def test_tool_tokens_count_in_fixed_windows(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    start = token_window(time.time())
    assert await store.take_tool_token(scope, "python", 2, start + 1) == TokenTaken(True)
    assert await store.take_tool_token(scope, "python", 2, start + 2) == TokenTaken(True)
    refused = await store.take_tool_token(scope, "python", 2, start + 20)
    assert not refused.allowed and refused.retry_after_seconds == pytest.approx(TOKEN_WINDOW_SECONDS - 20)
    assert (await store.take_tool_token(scope, "calculator", 2, start + 20)).allowed  # per tool
    bob = Scope(tenant_id="acme", user_id="bob", conversation_id=scope.conversation_id + "-bob")
    await store.claim_conversation(bob)
    assert (await store.take_tool_token(bob, "python", 2, start + 20)).allowed  # per user
    assert (await store.take_tool_token(scope, "python", 2, start + TOKEN_WINDOW_SECONDS)).allowed  # next window


async def test_tool_tokens_are_shared_by_the_users_conversations_and_atomic(store: Store, scope: Scope) -> None:
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-b"})
    await store.claim_conversation(scope)
    await store.claim_conversation(other)
    now = token_window(time.time()) + 1
    taken = await asyncio.gather(*(store.take_tool_token(s, "python", 5, now) for s in [scope, other] * 10))
    assert sum(t.allowed for t in taken) == 5


async def test_no_limit_is_always_allowed_and_tokens_are_scoped(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    for _ in range(3):
        assert await store.take_tool_token(scope, "python", 0, time.time()) == TokenTaken(True)
    with pytest.raises(Forbidden):
        await store.take_tool_token(scope.model_copy(update={"user_id": "mallory"}), "python", 1, time.time())
