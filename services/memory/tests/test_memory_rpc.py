"""MemoryRpc.handle: bytes in, a MemoryReply out, whatever the request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.rpc.turns import earlier_turns_ended
from agentry_memory.store import Store
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import CancelRequested, ControlMessage
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AppendMessages,
    BeginTurn,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    ClaimToolCall,
    CompleteToolCall,
    Context,
    Done,
    Frames,
    GetContext,
    GetFrames,
    MemoryFailure,
    MemoryReply,
    RecordReasoning,
    StepReasoning,
    TakeToolToken,
    ToolCallClaimed,
    TurnBegun,
    TurnCancelAccepted,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from pydantic import BaseModel


class Broadcasts:
    """The injected publisher: records what would go to the control exchange."""

    def __init__(self) -> None:
        self.sent: list[ControlMessage] = []
        self.fail = False

    async def __call__(self, message: ControlMessage) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append(message)


@pytest.fixture
def broadcasts() -> Broadcasts:
    return Broadcasts()


@pytest.fixture
def rpc(store: Store, broadcasts: Broadcasts) -> MemoryRpc:
    return MemoryRpc(store, window_messages=40, broadcast=broadcasts)


async def ask(rpc: MemoryRpc, request: BaseModel | bytes) -> MemoryReply:
    body = request if isinstance(request, bytes) else request.model_dump_json().encode()
    return MEMORY_REPLY.validate_json(await rpc.handle(body))


async def code(rpc: MemoryRpc, request: BaseModel | bytes) -> str:
    reply = await ask(rpc, request)
    assert isinstance(reply, MemoryFailure), reply
    return reply.code


async def test_a_conversation_through_rpc(rpc: MemoryRpc, store: Store, scope: Scope) -> None:
    assert await ask(rpc, ClaimConversation(scope=scope, new=True)) == Claimed(created=True)
    assert await ask(rpc, ClaimConversation(scope=scope)) == Claimed(created=False)
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    assert await ask(rpc, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=1, state="running")
    answer = [ChatMessage(role="assistant", content="hello")]
    assert await ask(rpc, AppendMessages(scope=scope, turn_id="t1", messages=answer)) == Done()
    assert await ask(rpc, RecordReasoning(scope=scope, turn_id="t1", step=0, text="greet back")) == Done()
    context = await ask(rpc, GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context)
    assert [m.content for m in context.messages] == ["hi"]
    assert context.produced == answer
    await store.append_frame(scope, "e1", {"type": "turn.started", "conversation_id": scope.conversation_id})
    frames = await ask(rpc, GetFrames(scope=scope, after_seq=0))
    assert isinstance(frames, Frames) and [f["seq"] for f in frames.frames] == [1]
    assert await ask(rpc, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=2, state="running")


async def test_a_checkpoint_carries_the_reasoning_of_its_steps(rpc: MemoryRpc, store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.record_reasoning(scope, "t1", 0, "an earlier attempt")
    answer = [ChatMessage(role="assistant", content="hello")]
    steps = [StepReasoning(step=1, text="then answer"), StepReasoning(step=0, text="greet back")]
    assert await ask(rpc, AppendMessages(scope=scope, turn_id="t1", messages=answer, reasoning=steps)) == Done()
    assert await store.reasoning(scope, "t1") == ["greet back", "then answer"]
    context = await ask(rpc, GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context) and context.produced == answer
    # A request without the field (an older reasoner) still parses and records none.
    old = (
        b'{"kind":"memory.append_messages","scope":%s,"turn_id":"t1","messages":[]}' % scope.model_dump_json().encode()
    )
    assert await ask(rpc, old) == Done()
    assert await store.reasoning(scope, "t1") == ["greet back", "then answer"]


async def test_begin_turn_answers_the_context_with_it_when_asked(rpc: MemoryRpc, store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    begun = await ask(rpc, BeginTurn(scope=scope, turn_id="t1", with_context=True))
    assert isinstance(begun, TurnBegun) and (begun.attempt, begun.state) == (1, "running")
    assert begun.context == await ask(rpc, GetContext(scope=scope, turn_id="t1"))
    await store.append_frame(scope, "t1:end", {"type": "turn.completed", "turn_id": "t1", "text": "ok"})
    finished = await ask(rpc, BeginTurn(scope=scope, turn_id="t1", with_context=True))
    assert finished == TurnBegun(attempt=2, state="completed")  # nothing to run: no context


async def test_window_setting_bounds_the_context(store: Store, scope: Scope, broadcasts: Broadcasts) -> None:
    rpc = MemoryRpc(store, window_messages=1, broadcast=broadcasts)
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="q1"))
    await store.add_turn(scope, "t2", ChatMessage(role="user", content="q2"))
    steps = [ChatMessage(role="assistant", content=f"a{i}") for i in range(3)]
    await store.append_messages(scope, "t2", steps)
    context = await ask(rpc, GetContext(scope=scope, turn_id="t2"))
    assert isinstance(context, Context) and [m.content for m in context.messages] == ["q2"]
    assert context.produced == steps  # the checkpoint is never cut by the window


async def test_cancel_of_a_queued_turn_is_recorded_and_broadcast(
    rpc: MemoryRpc, store: Store, scope: Scope, broadcasts: Broadcasts
) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    cancel = CancelTurnRequest(tenant_id=scope.tenant_id, user_id=scope.user_id, turn_id="t1")
    reply = await ask(rpc, cancel)
    assert reply == TurnCancelAccepted(conversation_id=scope.conversation_id, state="queued")
    assert broadcasts.sent == [CancelRequested(conversation_id=scope.conversation_id, turn_id="t1")]
    assert await ask(rpc, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=1, state="cancelled")


async def test_cancel_of_a_finished_turn_changes_nothing(
    rpc: MemoryRpc, store: Store, scope: Scope, broadcasts: Broadcasts
) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.append_frame(scope, "t1:done", {"type": "turn.completed", "turn_id": "t1", "text": "ok"})
    cancel = CancelTurnRequest(tenant_id=scope.tenant_id, user_id=scope.user_id, turn_id="t1")
    assert await ask(rpc, cancel) == TurnCancelAccepted(conversation_id=scope.conversation_id, state="completed")
    assert broadcasts.sent == []
    assert await ask(rpc, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=1, state="completed")


async def test_cancel_failures(rpc: MemoryRpc, store: Store, scope: Scope, broadcasts: Broadcasts) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    assert await code(rpc, CancelTurnRequest(tenant_id="acme", user_id="alice", turn_id="nope")) == "not_found"
    assert await code(rpc, CancelTurnRequest(tenant_id="acme", user_id="mallory", turn_id="t1")) == "forbidden"
    assert await code(rpc, CancelTurnRequest(tenant_id="other", user_id="alice", turn_id="t1")) == "forbidden"
    broadcasts.fail = True  # recorded, but nobody told: the caller retries
    cancel = CancelTurnRequest(tenant_id="acme", user_id="alice", turn_id="t1")
    assert await code(rpc, cancel) == "internal"
    assert (await store.turn_status(scope, "t1")).cancel_requested  # a reasoner that begins it now sees it
    broadcasts.fail = False
    assert await ask(rpc, cancel) == TurnCancelAccepted(conversation_id=scope.conversation_id, state="queued")
    assert len(broadcasts.sent) == 1


async def test_tool_calls_are_claimed_once_and_keep_their_result(rpc: MemoryRpc, store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    claim = ClaimToolCall(scope=scope, turn_id="t1", call_id="c1", tool="clock")
    assert await ask(rpc, claim) == ToolCallClaimed(state="new")
    again = await ask(rpc, claim)
    assert isinstance(again, ToolCallClaimed) and again.state == "running" and again.result is None
    result = ToolCompleted(call_id="c1", tool="clock", ok=True, output="12:00").model_dump(mode="json")
    assert await ask(rpc, CompleteToolCall(scope=scope, turn_id="t1", call_id="c1", result=result)) == Done()
    assert await ask(rpc, claim) == ToolCallClaimed(state="done", result=result)


async def test_a_completion_must_be_a_tool_completed_of_that_call(rpc: MemoryRpc, store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    other = ToolCompleted(call_id="c2", tool="clock", ok=True).model_dump(mode="json")
    assert await code(rpc, CompleteToolCall(scope=scope, turn_id="t1", call_id="c1", result={"x": 1})) == "invalid"
    assert await code(rpc, CompleteToolCall(scope=scope, turn_id="t1", call_id="c1", result=other)) == "invalid"
    claim = ClaimToolCall(scope=scope, turn_id="t1", call_id="c1", tool="clock")
    assert await ask(rpc, claim) == ToolCallClaimed(state="new")  # nothing was stored


async def test_failures_are_replies(rpc: MemoryRpc, scope: Scope) -> None:
    await ask(rpc, ClaimConversation(scope=scope, new=True))
    mallory = scope.model_copy(update={"user_id": "mallory"})
    assert await code(rpc, ClaimConversation(scope=mallory)) == "forbidden"
    assert await code(rpc, GetFrames(scope=mallory)) == "forbidden"
    assert await code(rpc, GetContext(scope=scope, turn_id="unknown")) == "not_found"
    assert await code(rpc, BeginTurn(scope=scope, turn_id="unknown")) == "not_found"
    assert await code(rpc, ClaimToolCall(scope=scope, turn_id="unknown", call_id="c", tool="x")) == "not_found"
    assert await code(rpc, b"not json") == "invalid"
    assert await code(rpc, b'{"kind": "memory.get_context"}') == "invalid"
    assert await code(rpc, b'{"kind": "memory.cancel_turn", "tenant_id": "a"}') == "invalid"
    assert await code(rpc, b'{"kind": "memory.drop_database"}') == "invalid"
    assert await code(rpc, TakeToolToken(scope=mallory, tool="clock", per_minute=1)) == "forbidden"


async def test_an_unexpected_error_is_internal_and_logged(
    rpc: MemoryRpc, store: Store, scope: Scope, caplog: Any
) -> None:
    await store.close()  # every call now fails inside the store
    reply = await ask(rpc, ClaimConversation(scope=scope))
    assert isinstance(reply, MemoryFailure) and reply.code == "internal"
    assert "memory request failed" in caplog.text
    assert json.loads(reply.model_dump_json())["message"]  # says something, leaks nothing
    await store.open()  # for the fixture's close


async def test_begin_turn_waits_until_the_earlier_turns_end_is_sequenced(
    rpc: MemoryRpc, store: Store, scope: Scope
) -> None:
    """The reasoner starts the next turn once the previous turn's end is confirmed in the
    log, not yet sequenced: its BeginTurn waits, so the context holds the answer."""
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="first"))
    await store.add_turn(scope, "t2", ChatMessage(role="user", content="second"))
    await store.begin_turn(scope, "t1")
    begin = asyncio.create_task(ask(rpc, BeginTurn(scope=scope, turn_id="t2", with_context=True)))
    await asyncio.sleep(0.2)
    assert not begin.done()
    await store.append_messages(scope, "t1", [ChatMessage(role="assistant", content="answer one")])
    await store.append_frame(scope, "t1:end", {"type": "turn.completed", "turn_id": "t1", "text": "answer one"})
    begun = await asyncio.wait_for(begin, 2)
    assert isinstance(begun, TurnBegun) and (begun.attempt, begun.state) == (1, "running")
    assert begun.context is not None
    assert [m.content for m in begun.context.messages] == ["first", "answer one", "second"]


async def test_begin_turn_waits_for_an_earlier_turn_only_so_long(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="first"))
    await store.add_turn(scope, "t2", ChatMessage(role="user", content="second"))
    await store.begin_turn(scope, "t1")  # and its end never comes (say, its dead letter waits)
    await asyncio.wait_for(earlier_turns_ended(store, scope, "t2", wait=0.1), 2)
    assert await store.earlier_turn_running(scope, "t2")
