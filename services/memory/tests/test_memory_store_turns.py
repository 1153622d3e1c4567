"""The `Store` contract for turn state: states, attempts, cancels, checkpoints (every backend)."""

from __future__ import annotations

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


def completed(turn_id: str) -> dict[str, Any]:
    return {"type": "turn.completed", "turn_id": turn_id, "text": "done"}


def failed(turn_id: str, code: str) -> dict[str, Any]:
    return {"type": "turn.failed", "turn_id": turn_id, "error": {"code": code, "message": "x"}}


async def state(store: Store, scope: Scope, turn_id: str) -> str:
    return (await store.turn_status(scope, turn_id)).state


async def test_a_turn_is_queued_then_running_then_completed(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    assert await state(store, scope, "t1") == "queued"
    assert await store.begin_turn(scope, "t1") == (1, "running")
    assert await state(store, scope, "t1") == "running"
    assert await store.begin_turn(scope, "t1") == (2, "running")  # a replica took it over
    await store.append_frame(scope, "t1:done", completed("t1"))
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.attempts, status.finished_by) == ("completed", 2, "t1:done")
    assert await store.begin_turn(scope, "t1") == (3, "completed")  # finished: left as it is
    assert await state(store, scope, "t1") == "completed"


@pytest.mark.parametrize(
    ("code", "expected"), [("cancelled", "cancelled"), ("poison", "failed"), ("internal", "failed")]
)
async def test_turn_failed_ends_a_turn_as_failed_or_cancelled(
    store: Store, scope: Scope, code: str, expected: str
) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    await store.begin_turn(scope, "t1")
    await store.append_frame(scope, "t1:end", failed("t1", code))
    assert await state(store, scope, "t1") == expected


async def test_the_first_final_frame_wins(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    await store.append_frame(scope, "t1:done", completed("t1"))
    await store.append_frame(scope, "t1:late", failed("t1", "cancelled"))
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.finished_by) == ("completed", "t1:done")


async def test_frames_of_other_or_unknown_turns_finish_nothing(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    await store.add_turn(scope, "t2", user("again"))
    assert await store.append_frame(scope, "x:done", completed("unknown")) == (1, True)
    await store.append_frame(scope, "t2:delta", {"type": "message.delta", "turn_id": "t2", "text": "x"})
    await store.append_frame(scope, "t2:done", completed("t2"))
    assert await state(store, scope, "t1") == "queued"
    assert await state(store, scope, "t2") == "completed"


async def test_cancel_while_queued_makes_begin_say_cancelled(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    before = await store.cancel_turn(scope.tenant_id, scope.user_id, "t1")
    assert (before.conversation_id, before.state, before.cancel_requested) == (scope.conversation_id, "queued", False)
    assert (await store.turn_status(scope, "t1")).cancel_requested
    assert await store.begin_turn(scope, "t1") == (1, "cancelled")
    assert await store.begin_turn(scope, "t1") == (2, "cancelled")  # until its turn.failed is sequenced
    assert await state(store, scope, "t1") == "queued"
    await store.append_frame(scope, "t1:end", failed("t1", "cancelled"))
    assert await state(store, scope, "t1") == "cancelled"
    assert await store.begin_turn(scope, "t1") == (3, "cancelled")


async def test_cancel_while_running_reaches_a_replica_that_takes_over(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    await store.begin_turn(scope, "t1")
    assert (await store.cancel_turn(scope.tenant_id, scope.user_id, "t1")).state == "running"
    # The holder heard the broadcast; if it died first, the next attempt must not carry on.
    assert await store.begin_turn(scope, "t1") == (2, "cancelled")


async def test_cancel_of_a_finished_turn_records_nothing(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    await store.append_frame(scope, "t1:done", completed("t1"))
    assert (await store.cancel_turn(scope.tenant_id, scope.user_id, "t1")).state == "completed"
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.cancel_requested) == ("completed", False)


async def test_cancel_finds_the_turn_by_id_and_checks_its_owner(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    with pytest.raises(NotFound):
        await store.cancel_turn(scope.tenant_id, scope.user_id, "nope")
    with pytest.raises(Forbidden):
        await store.cancel_turn(scope.tenant_id, "mallory", "t1")
    with pytest.raises(Forbidden):
        await store.cancel_turn("other", scope.user_id, "t1")
    assert not (await store.turn_status(scope, "t1")).cancel_requested


async def test_turn_state_is_scoped(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("hi"))
    mallory = scope.model_copy(update={"user_id": "mallory"})
    for attempt in (store.begin_turn(mallory, "t1"), store.turn_status(mallory, "t1")):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(NotFound):
        await store.begin_turn(scope, "nope")
    assert (await store.turn_status(scope, "t1")).attempts == 0


async def test_produced_is_this_turns_checkpoint_and_messages_stop_at_its_question(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("q1"))
    await store.append_messages(scope, "t1", [assistant("a1")])
    await store.add_turn(scope, "t2", user("q2"))
    await store.add_turn(scope, "t3", user("q3"))  # queued behind t2: never part of t2's context
    steps = [assistant(f"step {i}") for i in range(5)]
    await store.append_messages(scope, "t2", steps)
    context = await store.context(scope, "t2", 2)
    assert [m.content for m in context.messages] == ["a1", "q2"]  # the window bounds messages only
    assert context.produced == steps
    assert (await store.context(scope, "t3", 40)).produced == []


async def test_a_checkpoint_replaces_the_whole_list(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", user("q1"))
    await store.append_messages(scope, "t1", [assistant("a"), assistant("b"), assistant("c")])
    await store.append_messages(scope, "t1", [assistant("a"), assistant("B")])
    assert [m.content for m in (await store.context(scope, "t1", 40)).produced] == ["a", "B"]
    await store.append_messages(scope, "t1", [])
    context = await store.context(scope, "t1", 40)
    assert context.produced == [] and [m.content for m in context.messages] == ["q1"]


async def test_an_earlier_running_turn_is_seen_until_its_end_is_sequenced(store: Store, scope: Scope) -> None:
    for turn_id, text in (("t1", "a"), ("t2", "b"), ("t3", "c")):
        await store.add_turn(scope, turn_id, user(text))
    assert not await store.earlier_turn_running(scope, "t2")  # t1 only queued
    await store.begin_turn(scope, "t1")
    assert not await store.earlier_turn_running(scope, "t1")  # nothing before it
    assert await store.earlier_turn_running(scope, "t2")
    assert await store.earlier_turn_running(scope, "t3")
    await store.append_frame(scope, "t1:end", completed("t1"))
    assert not await store.earlier_turn_running(scope, "t2")
    await store.begin_turn(scope, "t2")
    assert await store.earlier_turn_running(scope, "t3") and not await store.earlier_turn_running(scope, "t2")
    with pytest.raises(NotFound):
        await store.earlier_turn_running(scope, "unknown")


async def test_a_new_turn_is_begun_as_it_is_added_when_no_earlier_turn_is_unfinished(
    store: Store, scope: Scope
) -> None:
    """Memory begins a turn as it forwards it (one round trip less for the reasoner), but
    only once, and never ahead of an earlier turn that has not ended: that one's answer
    belongs in this turn's context."""
    assert await store.add_and_begin_turn(scope, "t1", user("first")) is True
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.attempts) == ("running", 1)
    assert await store.add_and_begin_turn(scope, "t1", user("first")) is False  # redelivered: no second begin
    assert (await store.turn_status(scope, "t1")).attempts == 1

    assert await store.add_and_begin_turn(scope, "t2", user("second")) is False  # t1 is running
    assert (await store.turn_status(scope, "t2")).state == "queued"
    await store.append_frame(scope, "t1:end", completed("t1"))
    assert await store.add_and_begin_turn(scope, "t3", user("third")) is False  # t2 still queued
    assert await store.begin_turn(scope, "t2") == (1, "running")  # its reasoner begins it
    await store.append_frame(scope, "t2:end", completed("t2"))
    assert await store.begin_turn(scope, "t3") == (1, "running")
    await store.append_frame(scope, "t3:end", completed("t3"))

    assert await store.add_and_begin_turn(scope, "t4", user("fourth")) is True
    assert await store.begin_turn(scope, "t4") == (2, "running")  # taken again after a crash
    context = await store.context(scope, "t4", 10)
    assert [m.content for m in context.messages] == ["first", "second", "third", "fourth"]


async def test_add_and_begin_turn_is_scoped(store: Store, scope: Scope) -> None:
    await store.add_and_begin_turn(scope, "t1", user("mine"))
    stranger = scope.model_copy(update={"user_id": "someone-else"})
    with pytest.raises(Forbidden):
        await store.add_and_begin_turn(stranger, "t1", user("theirs"))


def accepted(turn_id: str) -> tuple[str, EncodedFrame]:
    return f"{turn_id}:accepted", EncodedFrame.of({"type": "message.accepted", "turn_id": turn_id})


async def test_a_turn_enters_with_its_accepted_frame_in_one_write(store: Store, scope: Scope) -> None:
    """`enter_turn` is `add_turn` (or `add_and_begin_turn`) and the turn's `message.accepted`
    together: the same answers, the frame sequenced once however often the entry comes."""
    assert await store.enter_turn(scope, "t1", user("first"), accepted("t1"), begin=True) == (True, (1, True))
    assert await store.enter_turn(scope, "t1", user("first"), accepted("t1"), begin=True) == (False, (1, False))
    status = await store.turn_status(scope, "t1")
    assert (status.state, status.attempts) == ("running", 1)
    assert await store.enter_turn(scope, "t2", user("second"), accepted("t2"), begin=True) == (False, (2, True))
    assert await store.enter_turn(scope, "t3", user("third"), accepted("t3"), begin=False) == (False, (3, True))
    assert [await state(store, scope, t) for t in ("t2", "t3")] == ["queued", "queued"]
    frames = await store.frames_after(scope, 0, 10)
    assert [(f["seq"], f["type"], f["turn_id"]) for f in frames] == [
        (1, "message.accepted", "t1"),
        (2, "message.accepted", "t2"),
        (3, "message.accepted", "t3"),
    ]
    context = await store.context(scope, "t3", 10)
    assert [m.content for m in context.messages] == ["first", "second", "third"]


async def test_a_refused_turn_enters_no_accepted_frame(store: Store, scope: Scope) -> None:
    await store.enter_turn(scope, "t1", user("mine"), accepted("t1"), begin=True)
    elsewhere = scope.model_copy(update={"conversation_id": scope.conversation_id + "-2"})
    await store.claim_conversation(elsewhere)
    with pytest.raises(Forbidden):  # t1 is a turn of the first conversation
        await store.enter_turn(elsewhere, "t1", user("again"), accepted("t1"), begin=True)
    assert await store.frames_after(elsewhere, 0, 10) == []
    stranger = scope.model_copy(update={"user_id": "someone-else"})
    with pytest.raises(Forbidden):
        await store.enter_turn(stranger, "t9", user("theirs"), accepted("t9"), begin=False)
    assert [f["turn_id"] for f in await store.frames_after(scope, 0, 10)] == ["t1"]
