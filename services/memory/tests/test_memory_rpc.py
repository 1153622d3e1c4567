"""MemoryRpc.handle: bytes in, a MemoryReply out, whatever the request."""

from __future__ import annotations

import json
from typing import Any

from agentry_memory.rpc import MemoryRpc
from agentry_memory.store import Store
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AppendMessages,
    ChatMessage,
    ClaimConversation,
    Claimed,
    Context,
    Done,
    Frames,
    GetContext,
    GetFrames,
    MemoryFailure,
    MemoryReply,
    RecordReasoning,
)
from agentry_shared.contracts.scope import Scope
from pydantic import BaseModel


async def ask(rpc: MemoryRpc, request: BaseModel | bytes) -> MemoryReply:
    body = request if isinstance(request, bytes) else request.model_dump_json().encode()
    return MEMORY_REPLY.validate_json(await rpc.handle(body))


async def test_a_conversation_through_rpc(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=40)
    assert await ask(rpc, ClaimConversation(scope=scope)) == Claimed(created=True)
    assert await ask(rpc, ClaimConversation(scope=scope)) == Claimed(created=False)
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    answer = [ChatMessage(role="assistant", content="hello")]
    assert await ask(rpc, AppendMessages(scope=scope, turn_id="t1", messages=answer)) == Done()
    assert await ask(rpc, RecordReasoning(scope=scope, turn_id="t1", step=0, text="greet back")) == Done()
    context = await ask(rpc, GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context)
    assert [m.content for m in context.messages] == ["hi", "hello"]
    await store.append_frame(scope, "e1", {"type": "turn.started", "conversation_id": scope.conversation_id})
    frames = await ask(rpc, GetFrames(scope=scope, after_seq=0))
    assert isinstance(frames, Frames) and [f["seq"] for f in frames.frames] == [1]


async def test_window_setting_bounds_the_context(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=1)
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="q1"))
    await store.add_turn(scope, "t2", ChatMessage(role="user", content="q2"))
    context = await ask(rpc, GetContext(scope=scope, turn_id="t2"))
    assert isinstance(context, Context) and [m.content for m in context.messages] == ["q2"]


async def test_failures_are_replies(store: Store, scope: Scope) -> None:
    rpc = MemoryRpc(store, window_messages=40)
    await ask(rpc, ClaimConversation(scope=scope))
    mallory = scope.model_copy(update={"user_id": "mallory"})

    async def code(request: BaseModel | bytes) -> str:
        reply = await ask(rpc, request)
        assert isinstance(reply, MemoryFailure), reply
        return reply.code

    assert await code(ClaimConversation(scope=mallory)) == "forbidden"
    assert await code(GetFrames(scope=mallory)) == "forbidden"
    assert await code(GetContext(scope=scope, turn_id="unknown")) == "not_found"
    assert await code(b"not json") == "invalid"
    assert await code(b'{"kind": "memory.get_context"}') == "invalid"
    assert await code(b'{"kind": "memory.drop_database"}') == "invalid"


async def test_an_unexpected_error_is_internal_and_logged(store: Store, scope: Scope, caplog: Any) -> None:
    rpc = MemoryRpc(store, window_messages=40)
    await store.close()  # every call now fails inside the store
    reply = await ask(rpc, ClaimConversation(scope=scope))
    assert isinstance(reply, MemoryFailure) and reply.code == "internal"
    assert "memory request failed" in caplog.text
    assert json.loads(reply.model_dump_json())["message"]  # says something, leaks nothing
    await store.open()  # for the fixture's close
