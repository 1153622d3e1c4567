"""The `Store` contract for a user's conversation list (every backend), and its RPC."""

from __future__ import annotations

import asyncio
import json

from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import Store
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.frames import TITLE_CHARS
from agentry_shared.contracts.memory import MEMORY_REPLY, Conversations, ListConversations, MemoryFailure
from agentry_shared.contracts.scope import Scope


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def of(scope: Scope, conversation_id: str) -> Scope:
    return Scope(tenant_id=scope.tenant_id, user_id=scope.user_id, conversation_id=conversation_id)


async def tick() -> None:
    """Times are the store's clock: far enough apart to order them."""
    await asyncio.sleep(0.02)


async def test_newest_activity_first_with_the_first_user_message_as_title(store: Store, scope: Scope) -> None:
    first, second, empty = of(scope, "c-first"), of(scope, "c-second"), of(scope, "c-empty")
    await store.claim_conversation(first)
    await store.add_turn(first, "t1", user("what is 37*91?"))
    await tick()
    await store.claim_conversation(second)
    await store.add_turn(second, "t2", user("write notes"))
    await tick()
    await store.claim_conversation(empty)
    await tick()
    await store.add_turn(first, "t3", user("and 2+2?"))  # the first is the latest active again
    listed = await store.list_conversations(scope.tenant_id, scope.user_id, 10)
    assert [c.conversation_id for c in listed] == ["c-first", "c-empty", "c-second"]
    assert [c.title for c in listed] == ["what is 37*91?", "", "write notes"]
    by_id = {c.conversation_id: c for c in listed}
    assert by_id["c-first"].last_activity_at > by_id["c-first"].created_at
    assert by_id["c-empty"].last_activity_at == by_id["c-empty"].created_at


async def test_a_finished_turn_is_activity(store: Store, scope: Scope) -> None:
    old, new = of(scope, "c-old"), of(scope, "c-new")
    await store.add_turn(old, "t1", user("old"))
    await tick()
    await store.add_turn(new, "t2", user("new"))
    await tick()
    await store.append_frame(old, "t1:done", {"type": "turn.completed", "turn_id": "t1", "text": "x"})
    listed = await store.list_conversations(scope.tenant_id, scope.user_id, 10)
    assert [c.conversation_id for c in listed] == ["c-old", "c-new"]


async def test_bounded_by_limit_and_only_the_users_own(store: Store, scope: Scope) -> None:
    for n in range(5):
        await store.add_turn(of(scope, f"c-{n}"), f"t-{n}", user(f"message {n}"))
        await tick()
    other = Scope(tenant_id=scope.tenant_id, user_id="mallory", conversation_id="c-mallory")
    await store.add_turn(other, "t-mallory", user("secret"))
    elsewhere = Scope(tenant_id="other-tenant", user_id=scope.user_id, conversation_id="c-elsewhere")
    await store.add_turn(elsewhere, "t-elsewhere", user("secret"))
    listed = await store.list_conversations(scope.tenant_id, scope.user_id, 3)
    assert [c.conversation_id for c in listed] == ["c-4", "c-3", "c-2"]
    assert await store.list_conversations(scope.tenant_id, "nobody", 10) == []


async def test_a_long_or_multiline_first_message_is_cut_to_one_line(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("line one\n\nline   two " + "x" * 200))
    (listed,) = await store.list_conversations(scope.tenant_id, scope.user_id, 10)
    assert listed.title.startswith("line one line two x")
    assert len(listed.title) == TITLE_CHARS and listed.title.endswith("…")


async def _no_broadcast(_message: ControlMessage) -> None:
    raise AssertionError("listing broadcasts nothing")


async def test_the_rpc_answers_the_list_and_refuses_a_bad_limit(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=40, broadcast=_no_broadcast)
    await store.add_turn(scope, "t1", user("hello"))
    request = ListConversations(tenant_id=scope.tenant_id, user_id=scope.user_id, limit=5)
    reply = MEMORY_REPLY.validate_json(await rpc.handle(request.model_dump_json().encode()))
    assert isinstance(reply, Conversations)
    assert [(c.conversation_id, c.title) for c in reply.conversations] == [(scope.conversation_id, "hello")]
    bad = {"kind": "memory.list_conversations", "tenant_id": "acme", "user_id": "alice", "limit": 0}
    refused = MEMORY_REPLY.validate_json(await rpc.handle(json.dumps(bad).encode()))
    assert isinstance(refused, MemoryFailure) and refused.code == "invalid"
