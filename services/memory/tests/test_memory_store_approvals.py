"""The `Store` contract for approvals of destructive calls and per-user tool rate limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from agentry_memory.store import TOKEN_WINDOW_SECONDS, ApprovalAnswer, ApprovalRecord, Store, TokenTaken, token_window
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.scope import Scope

LATER = time.time() + 3600
NONE = arguments_sha256({})
PATH_A = arguments_sha256({"path": "a"})


def answer(
    turn_id: str,
    call_id: str,
    approved: bool,
    args: dict[str, Any] | None = None,
    *,
    user: str = "alice",
    tenant: str = "acme",
    conversation_id: str | None = None,
) -> ApprovalAnswer:
    digest = arguments_sha256(args or {})
    return ApprovalAnswer(tenant, user, turn_id, call_id, digest, approved, conversation_id)


async def state_of(store: Store, scope: Scope, turn_id: str, call_id: str, now: float) -> str | None:
    found = await store.approval(scope, turn_id, call_id, now)
    return None if found is None else found.state


async def turn(store: Store, scope: Scope, turn_id: str = "t1") -> None:
    await store.add_turn(scope, turn_id, ChatMessage(role="user", content="delete it"))


async def test_an_approval_is_pending_until_decided_once(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    now = time.time()
    assert await state_of(store, scope, "t1", "c1", now) is None
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER)
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER + 60)  # redelivered
    assert await state_of(store, scope, "t1", "c1", now) == "pending"
    decided = await store.decide_approval(answer("t1", "c1", True, {"path": "a"}), now)
    assert decided == ApprovalRecord(scope.conversation_id, "t1", "c1", "approved", changed=True, args_sha256=PATH_A)
    again = await store.decide_approval(answer("t1", "c1", False, {"path": "a"}), now)  # a second click: nothing
    assert again == ApprovalRecord(scope.conversation_id, "t1", "c1", "approved", changed=False, args_sha256=PATH_A)
    assert await state_of(store, scope, "t1", "c1", now) == "approved"
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER)  # keeps the decision
    assert await state_of(store, scope, "t1", "c1", LATER + 10) == "approved"


async def test_a_denial_is_kept(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "python", {}, LATER)
    assert (await store.decide_approval(answer("t1", "c1", False), time.time())).state == "denied"
    assert await state_of(store, scope, "t1", "c1", time.time()) == "denied"


async def test_past_its_expiry_an_approval_is_expired_and_cannot_be_given(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    expires = time.time() + 5
    await store.request_approval(scope, "t1", "c1", "python", {}, expires)
    assert await state_of(store, scope, "t1", "c1", expires - 1) == "pending"
    assert await state_of(store, scope, "t1", "c1", expires + 1) == "expired"
    late = await store.decide_approval(answer("t1", "c1", True), expires + 1)
    assert (late.state, late.changed) == ("expired", False)
    assert await state_of(store, scope, "t1", "c1", expires - 1) == "expired"  # recorded, not only computed


async def test_a_decision_applies_only_to_the_named_turns_call(store: Store, scope: Scope) -> None:
    """Model call ids repeat: two of the user's conversations wait on `call_0` at once."""
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-b"})
    await turn(store, scope, "t1")
    await turn(store, other, "t2")
    await store.request_approval(scope, "t1", "call_0", "python", {}, LATER)
    await asyncio.sleep(0.01)
    await store.request_approval(other, "t2", "call_0", "python", {}, LATER)  # same model call id, newer
    decided = await store.decide_approval(answer("t1", "call_0", True), time.time())
    assert (decided.conversation_id, decided.turn_id, decided.state) == (scope.conversation_id, "t1", "approved")
    assert await state_of(store, other, "t2", "call_0", time.time()) == "pending"
    with pytest.raises(NotFound):  # the turn is not of the conversation named
        await store.decide_approval(answer("t2", "call_0", True, conversation_id=scope.conversation_id), time.time())
    assert await state_of(store, other, "t2", "call_0", time.time()) == "pending"
    named = await store.decide_approval(
        answer("t2", "call_0", False, conversation_id=other.conversation_id), time.time()
    )
    assert (named.conversation_id, named.state) == (other.conversation_id, "denied")
    assert await state_of(store, scope, "t1", "call_0", time.time()) == "approved"


async def test_an_answer_for_other_arguments_decides_nothing(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a", "text": "ü"}, LATER)
    shown = arguments_sha256({"text": "ü", "path": "a"})  # key order is not part of the digest
    for other_args in ({"path": "b", "text": "ü"}, {"path": "a"}, {}):
        refused = await store.decide_approval(answer("t1", "c1", True, other_args), time.time())
        assert refused == ApprovalRecord(scope.conversation_id, "t1", "c1", "pending", args_sha256=shown)
    assert await state_of(store, scope, "t1", "c1", time.time()) == "pending"
    decided = await store.decide_approval(answer("t1", "c1", True, {"path": "a", "text": "ü"}), time.time())
    assert (decided.state, decided.changed) == ("approved", True)


async def test_approvals_are_scoped(store: Store, scope: Scope) -> None:
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "python", {}, LATER)
    with pytest.raises(NotFound):  # another user's call id is not found, not forbidden: nothing leaks
        await store.decide_approval(answer("t1", "c1", True, user="mallory"), time.time())
    with pytest.raises(NotFound):
        await store.decide_approval(answer("t1", "c1", True, tenant="other"), time.time())
    with pytest.raises(NotFound):
        await store.decide_approval(answer("t1", "nope", True), time.time())
    with pytest.raises(NotFound):
        await store.decide_approval(answer("t9", "c1", True), time.time())
    mallory = scope.model_copy(update={"user_id": "mallory"})
    for attempt in (
        store.request_approval(mallory, "t1", "c2", "python", {}, LATER),
        store.approval(mallory, "t1", "c1", time.time()),
    ):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(NotFound):
        await store.request_approval(scope, "nope", "c2", "python", {}, LATER)
    assert await state_of(store, scope, "t1", "c1", time.time()) == "pending"


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


async def test_an_approval_reads_back_with_its_arguments_digest(store: Store, scope: Scope) -> None:
    """The reasoner compares it: a resumed turn reusing the call id for new arguments is not approved."""
    await turn(store, scope)
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "a"}, LATER)
    await store.request_approval(scope, "t1", "c1", "workspace_write", {"path": "b"}, LATER)  # the first stays
    await store.decide_approval(answer("t1", "c1", True, {"path": "a"}), time.time())
    found = await store.approval(scope, "t1", "c1", time.time())
    assert found == ApprovalRecord(scope.conversation_id, "t1", "c1", "approved", args_sha256=PATH_A)
