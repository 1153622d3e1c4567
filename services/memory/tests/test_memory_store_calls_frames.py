"""The `Store` contract for tool-call claims and frame retention (every backend)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from agentry_memory.log.sequencer import encode_frame
from agentry_memory.store import Store
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_memory.store.mongo import frames as mongo_frames
from agentry_memory.store.sqlite import frames as sqlite_frames
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import ToolApprovalRequired, ToolFinished, arguments_sha256
from agentry_shared.contracts.scope import Scope

RESULT = {"kind": "tool.completed", "call_id": "c1", "tool": "clock", "ok": True, "output": "12:00"}


async def test_the_first_claim_wins_and_later_ones_see_it_running(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    first = await store.claim_tool_call(scope, "t1", "c1", "clock")
    assert (first.state, first.result) == ("new", None)
    await asyncio.sleep(0.02)
    second = await store.claim_tool_call(scope, "t1", "c1", "clock")
    assert second.state == "running" and second.result is None
    assert 0.01 < second.claimed_seconds_ago < 60
    third = await store.claim_tool_call(scope, "t1", "c1", "clock")
    assert third.claimed_seconds_ago >= second.claimed_seconds_ago  # the claim time is not refreshed


async def test_a_completed_call_answers_done_with_the_first_result(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.claim_tool_call(scope, "t1", "c1", "clock")
    await store.complete_tool_call(scope, "t1", "c1", RESULT)
    await store.complete_tool_call(scope, "t1", "c1", {**RESULT, "output": "13:00"})  # a duplicate runner
    claim = await store.claim_tool_call(scope, "t1", "c1", "clock")
    assert (claim.state, claim.result) == ("done", RESULT)


async def test_calls_are_kept_per_turn_and_completion_needs_no_claim(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.add_turn(scope, "t2", ChatMessage(role="user", content="again"))
    await store.complete_tool_call(scope, "t1", "c1", RESULT)
    assert (await store.claim_tool_call(scope, "t1", "c1", "clock")).state == "done"
    assert (await store.claim_tool_call(scope, "t2", "c1", "clock")).state == "new"


async def test_tool_calls_are_scoped(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    mallory = scope.model_copy(update={"user_id": "mallory"})
    for attempt in (
        store.claim_tool_call(mallory, "t1", "c1", "clock"),
        store.complete_tool_call(mallory, "t1", "c1", RESULT),
    ):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(NotFound):
        await store.claim_tool_call(scope, "nope", "c1", "clock")
    assert (await store.claim_tool_call(scope, "t1", "c1", "clock")).state == "new"


async def append(store: Store, scope: Scope, *event_ids: str) -> None:
    for event_id in event_ids:
        await store.append_frame(scope, event_id, {"type": "turn.started"})


async def seqs(store: Store, scope: Scope, after_seq: int = 0) -> list[int]:
    return [frame["seq"] for frame in await store.frames_after(scope, after_seq, 100)]


async def test_sweep_deletes_frames_older_than_the_cutoff(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    await append(store, scope, "e1", "e2")
    await asyncio.sleep(0.02)
    cutoff = time.time()
    await asyncio.sleep(0.02)
    await append(store, scope, "e3", "e4")
    assert await store.sweep_frames(cutoff) == 2
    assert await store.sweep_frames(cutoff) == 0
    assert await seqs(store, scope) == [3, 4]
    # A client that had seen seq 1 gets 3 first: the gap tells it the conversation was reset.
    assert await seqs(store, scope, after_seq=1) == [3, 4]
    assert await seqs(store, scope, after_seq=3) == [4]


async def test_the_last_frame_of_a_conversation_is_kept_so_a_gap_shows(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    await append(store, scope, "e1", "e2", "e3")
    assert await store.sweep_frames(time.time() + 1) == 2
    assert await store.sweep_frames(time.time() + 1) == 0
    # A client at seq 1 is told about 3: not "nothing new", which would hide that 2 is gone.
    assert await seqs(store, scope, after_seq=1) == [3]
    assert await seqs(store, scope, after_seq=3) == []
    assert await store.append_frame(scope, "e4", {"type": "turn.started"}) == (4, True)
    assert await store.sweep_frames(time.time() + 1) == 1
    assert await seqs(store, scope) == [4]


async def test_sweep_keeps_turns_and_messages(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.append_frame(scope, "t1:done", {"type": "turn.completed", "turn_id": "t1", "text": "ok"})
    await store.sweep_frames(time.time() + 1)
    assert [m.content for m in (await store.context(scope, "t1", 40)).messages] == ["hi"]
    assert (await store.turn_status(scope, "t1")).state == "completed"


def stores_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock both stores read a frame's age by, set by the test: `clock[0]`."""
    clock = [1_000_000.0]
    for backend in (sqlite_frames, mongo_frames):
        monkeypatch.setattr(backend, "time", SimpleNamespace(time=lambda: clock[0]))
    return clock


async def test_a_replayed_retry_hint_counts_from_the_replay(
    store: Store, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a `tool.finished` refused `rate_limited` carries `retry_after_ms`, counted
    from when it was made. A client that resumed (or reloaded the page) later was told the
    whole wait again, from now; a replay now gives what is left of it, and nothing once it
    has passed (the call may go). Frames without a wait are handed back as stored."""
    clock = stores_clock(monkeypatch)
    await store.claim_conversation(scope)
    limited = ToolFinished(
        conversation_id=scope.conversation_id,
        tool="calculator",
        call_id="c1",
        ok=False,
        error="rate_limited",
        retry_after_ms=12_000,
    )
    done = ToolFinished(conversation_id=scope.conversation_id, tool="calculator", call_id="c2", ok=True)
    encoded = [(f"e{n}", encode_frame(frame, scope.conversation_id, None)) for n, frame in enumerate((limited, done))]
    await store.append_frames(scope, list(encoded))

    async def replay() -> list[dict[str, object]]:
        return await store.frames_after(scope, 0, 10)

    assert (await replay())[0]["retry_after_ms"] == 12_000  # replayed at once: all of it
    clock[0] += 4.5
    frames = await replay()
    assert frames[0]["retry_after_ms"] == 7_500 and frames[0]["error"] == "rate_limited"
    assert frames[1] == done.model_copy(update={"seq": 2}).model_dump(mode="json")
    clock[0] += 7.5
    assert "retry_after_ms" not in (await replay())[0]  # passed: no wait is left
    assert (await replay())[0]["error"] == "rate_limited"
    clock[0] -= 60  # the clock stepped back: never a longer wait than the frame's own
    assert (await replay())[0]["retry_after_ms"] == 12_000


async def test_a_replayed_approval_deadline_counts_from_the_replay(
    store: Store, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replayed `tool.approval_required` said the full `expires_in_ms` again (the web page's
    dialog: "No answer within 120 s"), however long ago it was asked; now what is left, 0
    once passed (answering then gets `approval_expired`)."""
    clock = stores_clock(monkeypatch)
    await store.claim_conversation(scope)
    asked = ToolApprovalRequired(
        conversation_id=scope.conversation_id,
        tool="workspace_write",
        call_id="c1",
        arguments={"path": "a.txt"},
        args_sha256=arguments_sha256({"path": "a.txt"}),
        expires_in_ms=120_000,
    )
    await store.append_frames(scope, [("e1", encode_frame(asked, scope.conversation_id, "t1"))])
    clock[0] += 100
    [frame] = await store.frames_after(scope, 0, 10)
    assert frame == asked.model_copy(update={"seq": 1, "turn_id": "t1", "expires_in_ms": 20_000}).model_dump(
        mode="json"
    )
    clock[0] += 3600
    assert (await store.frames_after(scope, 0, 10))[0]["expires_in_ms"] == 0
