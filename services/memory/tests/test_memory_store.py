"""The `Store` contract, run against every backend of conftest.BACKENDS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from agentry_memory.store import EncodedFrame, Store
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


def call(call_id: str) -> ChatMessage:
    return ChatMessage(
        role="assistant",
        tool_calls=[{"id": call_id, "type": "function", "function": {"name": "clock", "arguments": "{}"}}],
    )


def result(call_id: str) -> ChatMessage:
    return ChatMessage(role="tool", tool_call_id=call_id, content="12:00")


def contents(messages: list[ChatMessage]) -> list[str | None]:
    return [m.content for m in messages]


async def window(store: Store, scope: Scope, turn_id: str, limit: int = 40) -> list[str | None]:
    return contents((await store.context(scope, turn_id, limit)).messages)


async def produced(store: Store, scope: Scope, turn_id: str) -> list[str | None]:
    return contents((await store.context(scope, turn_id, 40)).produced)


async def test_claim_creates_once_and_only_for_its_owner(store: Store, scope: Scope) -> None:
    assert await store.claim_conversation(scope) is True
    assert await store.claim_conversation(scope) is False
    with pytest.raises(Forbidden):
        await store.claim_conversation(scope.model_copy(update={"user_id": "mallory"}))
    with pytest.raises(Forbidden):
        await store.claim_conversation(scope.model_copy(update={"tenant_id": "other"}))


async def test_add_turn_is_idempotent_by_turn_id(store: Store, scope: Scope) -> None:
    assert await store.add_turn(scope, "t1", user("hi")) == 1
    assert await store.add_turn(scope, "t1", user("hi")) == 1
    assert await store.add_turn(scope, "t2", user("again")) == 2
    assert await window(store, scope, "t2") == ["hi", "again"]


async def test_add_turn_creates_an_unclaimed_conversation(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    assert await store.claim_conversation(scope) is False


async def test_a_turn_id_of_another_conversation_is_refused(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    with pytest.raises(Forbidden):
        await store.add_turn(scope.model_copy(update={"conversation_id": "elsewhere"}), "t1", user("hi"))


async def test_context_orders_by_turn_not_by_arrival(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("q1"))
    await store.add_turn(scope, "t2", user("q2"))  # accepted while t1 is still being answered
    await store.append_messages(scope, "t1", [assistant("a1")])
    assert await window(store, scope, "t1") == ["q1"]  # t2 is not visible yet
    assert await produced(store, scope, "t1") == ["a1"]
    await store.append_messages(scope, "t2", [assistant("a2")])
    assert await window(store, scope, "t2") == ["q1", "a1", "q2"]
    assert await produced(store, scope, "t2") == ["a2"]


async def test_append_messages_retry_does_not_duplicate(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("q1"))
    await store.append_messages(scope, "t1", [call("c1"), result("c1"), assistant("draft")])
    await store.append_messages(scope, "t1", [call("c1"), result("c1"), assistant("final")])
    messages = (await store.context(scope, "t1", 40)).produced
    assert [m.role for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[0].tool_calls is not None and messages[0].tool_calls[0]["id"] == "c1"
    assert messages[1].tool_call_id == "c1"
    assert messages[-1].content == "final"


async def test_context_keeps_the_last_messages_of_the_window(store: Store, scope: Scope) -> None:
    for i in range(1, 6):
        await store.add_turn(scope, f"t{i}", user(f"q{i}"))
        await store.append_messages(scope, f"t{i}", [assistant(f"a{i}")])
    assert await window(store, scope, "t5", 3) == ["q4", "a4", "q5"]
    assert await window(store, scope, "t2", 3) == ["q1", "a1", "q2"]


async def test_window_never_opens_on_an_orphan_tool_result(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("what time is it"))
    await store.append_messages(scope, "t1", [call("c1"), result("c1"), result("c1b"), assistant("noon")])
    await store.add_turn(scope, "t2", user("thanks"))
    # The last 4 are: tool, tool, assistant, user; the tool results lost their call.
    messages = (await store.context(scope, "t2", 4)).messages
    assert [m.role for m in messages] == ["assistant", "user"]
    assert contents(messages) == ["noon", "thanks"]


async def test_frames_get_seq_one_to_n_and_redelivery_keeps_the_first(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    frame = {"type": "message.delta", "conversation_id": scope.conversation_id, "text": "x", "seq": 0}
    assert await store.append_frame(scope, "e1", frame) == (1, True)
    assert await store.append_frame(scope, "e2", frame) == (2, True)
    assert await store.append_frame(scope, "e1", frame) == (1, False)
    assert await store.append_frame(scope, "e3", frame) == (3, True)
    frames = await store.frames_after(scope, 0, 100)
    assert [f["seq"] for f in frames] == [1, 2, 3]
    assert frames[0] == {**frame, "seq": 1}
    assert [f["seq"] for f in await store.frames_after(scope, 1, 1)] == [2]


async def test_seq_is_per_conversation(store: Store, scope: Scope) -> None:
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-2"})
    for s in (scope, other):
        await store.claim_conversation(s)
    frame = {"type": "turn.started"}
    assert await store.append_frame(scope, "e1", frame) == (1, True)
    assert await store.append_frame(other, "e1", frame) == (1, True)
    assert await store.append_frame(scope, "e2", frame) == (2, True)


async def test_another_user_gets_forbidden_everywhere(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("secret"))
    await store.append_frame(scope, "e1", {"type": "turn.started"})
    mallory = scope.model_copy(update={"user_id": "mallory"})
    attempts = [
        store.context(mallory, "t1", 40),
        store.append_messages(mallory, "t1", [assistant("x")]),
        store.append_frame(mallory, "e2", {"type": "turn.started"}),
        store.frames_after(mallory, 0, 10),
        store.record_reasoning(mallory, "t1", 0, "x"),
        store.reasoning(mallory, "t1"),
        store.add_turn(mallory, "t9", user("x")),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            await attempt
    assert await window(store, scope, "t1") == ["secret"]


async def test_unknown_conversation_or_turn_is_not_found(store: Store, scope: Scope) -> None:
    with pytest.raises(NotFound):
        await store.frames_after(scope, 0, 10)
    await store.add_turn(scope, "t1", user("hi"))
    with pytest.raises(NotFound):
        await store.context(scope, "nope", 40)
    with pytest.raises(NotFound):
        await store.append_messages(scope, "nope", [assistant("x")])


async def test_reasoning_is_kept_but_never_in_context(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("q"))
    await store.record_reasoning(scope, "t1", 1, "thinking hard")
    await store.record_reasoning(scope, "t1", 0, "first thought")
    await store.record_reasoning(scope, "t1", 1, "thinking harder")  # a retry replaces its step
    await store.append_messages(scope, "t1", [assistant("a")])
    assert await store.reasoning(scope, "t1") == ["first thought", "thinking harder"]
    context = await store.context(scope, "t1", 40)
    everything = [*context.messages, *context.produced]
    assert all("thought" not in (m.content or "") and "thinking" not in (m.content or "") for m in everything)
    assert contents(everything) == ["q", "a"]


async def test_data_survives_close_and_reopen(make_store: Callable[[], Store], scope: Scope) -> None:
    first = make_store()
    await first.open()
    await first.add_turn(scope, "t1", user("q1"))
    await first.append_messages(scope, "t1", [assistant("a1")])
    await first.append_frame(scope, "e1", {"type": "turn.started"})
    await first.close()
    assert not first.is_open

    second = make_store()
    await second.open()
    try:
        assert await window(second, scope, "t1") == ["q1"]
        assert await produced(second, scope, "t1") == ["a1"]
        assert await second.append_frame(scope, "e1", {"type": "turn.started"}) == (1, False)
        assert await second.append_frame(scope, "e2", {"type": "turn.started"}) == (2, True)
        assert await second.add_turn(scope, "t2", user("q2")) == 2
    finally:
        await second.close()


async def test_a_batch_of_frames_sequences_like_one_frame_at_a_time(store: Store, scope: Scope) -> None:
    """Known ids keep their seq, new ones take the next in order, an id twice in one batch
    is stored once, and the first final frame of a turn is the one that ends it."""
    await store.add_turn(scope, "t1", user("hi"))
    assert await store.append_frame(scope, "seen", {"type": "turn.started", "turn_id": "t1"}) == (1, True)
    done = {"type": "turn.completed", "turn_id": "t1", "text": "ok"}
    failed = {"type": "turn.failed", "turn_id": "t1", "error": {"code": "internal", "message": "x"}}
    batch: list[tuple[str, EncodedFrame | dict[str, Any]]] = [
        ("a", {"type": "message.delta", "turn_id": "t1", "text": "o"}),
        ("seen", {"type": "turn.started", "turn_id": "t1"}),
        ("end", done),
        ("a", {"type": "message.delta", "turn_id": "t1", "text": "o"}),
        ("late", failed),
    ]
    assert await store.append_frames(scope, batch) == [(2, True), (1, False), (3, True), (2, False), (4, True)]
    assert [(f["seq"], f["type"]) for f in await store.frames_after(scope, 0, 10)] == [
        (1, "turn.started"),
        (2, "message.delta"),
        (3, "turn.completed"),
        (4, "turn.failed"),
    ]
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.finished_by) == ("completed", "end")
    assert await store.append_frames(scope, [("next", {"type": "turn.started"})]) == [(5, True)]
