"""ConversationLog.ingest on the real embedded store: what is stored, what goes out."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.log.sequencer import ConversationLog, encode_frame
from agentry_memory.store import Store
from agentry_memory.store.errors import Forbidden
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.events import LOG_ENTRY, EventPosted, EventsPosted, PostedEvent, TurnCheckpoint
from agentry_shared.contracts.frames import (
    FrameError,
    MessageAccepted,
    MessageDelta,
    ServerFrame,
    ToolApprovalRequired,
    TurnCompleted,
    TurnFailed,
)
from agentry_shared.contracts.memory import StepReasoning
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.topology import Topology

TOPOLOGY = Topology("test", 4)


def turn(scope: Scope, turn_id: str, text: str = "hello") -> TurnRequested:
    return TurnRequested(
        scope=scope, turn_id=turn_id, text=text, client_message_id=f"m-{turn_id}", accepted_at=datetime.now(UTC)
    )


def delta(scope: Scope, turn_id: str, event_id: str, text: str) -> EventPosted:
    frame = MessageDelta(conversation_id=scope.conversation_id, turn_id=turn_id, text=text)
    return EventPosted(scope=scope, turn_id=turn_id, event_id=event_id, frame=frame)


async def test_turn_is_stored_accepted_and_forwarded(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    request = turn(scope, "t1")
    body = json.dumps({**request.model_dump(mode="json"), "future_field": 1}).encode()
    frame_out, forward = await log.ingest(LOG_ENTRY.validate_json(body), body)

    assert (frame_out.exchange, frame_out.routing_key, frame_out.persistent) == (
        "test.frames",
        scope.conversation_id,
        False,
    )
    assert json.loads(frame_out.body) == {
        "type": "message.accepted",
        "conversation_id": scope.conversation_id,
        "turn_id": "t1",
        "id": "m-t1",
        "seq": 1,
    }
    assert forward.exchange == "test.turns"
    assert forward.routing_key == str(TOPOLOGY.partition(scope.conversation_id))
    assert forward.persistent and forward.body == body  # byte for byte, unknown fields included
    assert [m.content for m in (await store.context(scope, "t1", 40)).messages] == ["hello"]
    assert await store.frames_after(scope, 0, 10) == [json.loads(frame_out.body)]


async def test_redelivered_turn_repeats_the_same_output(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    request = turn(scope, "t1")
    first = await log.ingest(request)
    again = await log.ingest(request)
    assert first == again
    assert len(await store.frames_after(scope, 0, 10)) == 1
    assert len((await store.context(scope, "t1", 40)).messages) == 1


async def test_events_get_consecutive_seqs_and_redelivery_keeps_its_seq(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1"))
    outs = [await log.ingest(delta(scope, "t1", f"t1:{i}", f"part {i}")) for i in range(3)]
    redelivered = await log.ingest(delta(scope, "t1", "t1:1", "part 1"))
    seqs = [json.loads(out.body)["seq"] for [out] in outs]
    assert seqs == [2, 3, 4]
    assert redelivered == outs[1]
    assert [f["seq"] for f in await store.frames_after(scope, 0, 10)] == [1, 2, 3, 4]


async def test_a_batch_of_events_is_sequenced_in_order_and_redelivery_keeps_its_seqs(
    store: Store, scope: Scope
) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1"))
    [single] = await log.ingest(delta(scope, "t1", "t1:1", "a"))
    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="abc")
    events = [
        PostedEvent(event_id="t1:1", frame=delta(scope, "t1", "t1:1", "a").frame),  # seen before: keeps seq 2
        PostedEvent(event_id="t1:2", frame=delta(scope, "t1", "t1:2", "b").frame),
        PostedEvent(event_id="t1:3", frame=delta(scope, "t1", "t1:3", "c").frame),
        PostedEvent(event_id="t1:end", frame=done),
    ]
    body = EventsPosted(scope=scope, turn_id="t1", events=events).model_dump_json().encode()
    [out] = await log.ingest(LOG_ENTRY.validate_json(body))  # one fan-out message, a frame per line
    lines = out.body.split(b"\n")
    assert [json.loads(line)["seq"] for line in lines] == [2, 3, 4, 5]
    assert lines[0] == single.body
    assert [json.loads(line).get("text") for line in lines] == ["a", "b", "c", "abc"]
    assert (out.exchange, out.routing_key, out.persistent) == (single.exchange, single.routing_key, False)
    assert await log.ingest(LOG_ENTRY.validate_json(body)) == [out]  # redelivered: the same frames
    assert [f["seq"] for f in await store.frames_after(scope, 0, 10)] == [1, 2, 3, 4, 5]
    assert (await store.turn_status(scope, "t1")).state == "completed"


async def test_event_frame_is_published_as_sent_with_its_seq(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1"))
    frame = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="done")
    [out] = await log.ingest(EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=frame))
    assert (out.exchange, out.routing_key, out.persistent) == ("test.frames", scope.conversation_id, False)
    assert json.loads(out.body) == {**frame.model_dump(mode="json"), "seq": 2}


async def test_a_frame_cannot_claim_another_conversation(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1"))
    forged = MessageDelta(conversation_id="someone-elses", turn_id="t1", text="x")
    [out] = await log.ingest(EventPosted(scope=scope, turn_id="t1", event_id="e", frame=forged))
    assert out.routing_key == scope.conversation_id
    assert json.loads(out.body)["conversation_id"] == scope.conversation_id


async def test_turn_for_someone_elses_conversation_is_refused(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    log = ConversationLog(store, TOPOLOGY)
    with pytest.raises(Forbidden):
        await log.ingest(turn(scope.model_copy(update={"user_id": "mallory"}), "t1"))
    assert await store.frames_after(scope, 0, 10) == []


async def test_two_conversations_count_seq_separately(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-b"})
    [a, _] = await log.ingest(turn(scope, "ta"))
    [b, _] = await log.ingest(turn(other, "tb"))
    assert json.loads(a.body)["seq"] == json.loads(b.body)["seq"] == 1


FRAMES = [
    MessageAccepted(conversation_id="other", id="m1"),
    MessageDelta(conversation_id="c", turn_id="t", text='é "quoted"\n\u2028'),
    ToolApprovalRequired(
        conversation_id="c", turn_id="t", tool="rm", call_id="k", arguments={"a": [1, None]}, expires_in_ms=5
    ),
    TurnFailed(conversation_id="c", error=FrameError(code="cancelled", message="stop")),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f.type)
def test_a_frame_is_encoded_once_as_its_own_json_with_the_seq(frame: ServerFrame) -> None:
    encoded = encode_frame(frame, "c", frame.turn_id or "t0")
    expected = frame.model_copy(update={"conversation_id": "c", "turn_id": frame.turn_id or "t0", "seq": 17})
    assert encoded.with_seq(17) == expected.model_dump_json().encode()
    assert encoded.final_state == ("cancelled" if frame.type == "turn.failed" else None)


async def test_the_store_keeps_the_bytes_that_go_out(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1"))
    [out] = await log.ingest(delta(scope, "t1", "e1", "ünïcode"))
    assert (await store.frames_after(scope, 1, 10))[0] == json.loads(out.body)


async def test_the_final_checkpoint_is_stored_with_the_turns_end_and_never_replaced(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, TOPOLOGY)
    await log.ingest(turn(scope, "t1", "what is 37*91?"))
    await store.begin_turn(scope, "t1")
    produced = [ChatMessage(role="assistant", content="3367")]
    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="3367")
    first = EventsPosted(
        scope=scope,
        turn_id="t1",
        events=[
            PostedEvent(event_id="t1:1:1", frame=delta(scope, "t1", "t1:1:1", "3367").frame),
            PostedEvent(event_id="t1:end", frame=done),
        ],
        checkpoint=TurnCheckpoint(messages=produced, reasoning=[StepReasoning(step=0, text="multiply")]),
    )
    await log.ingest(LOG_ENTRY.validate_json(first.model_dump_json()))
    assert (await store.context(scope, "t1", limit=10)).produced == produced
    assert await store.reasoning(scope, "t1") == ["multiply"]
    assert (await store.turn_status(scope, "t1")).state == "completed"
    # A second attempt that raced the first one's end: its answer must not replace the one shown.
    second = first.model_copy(
        update={"checkpoint": TurnCheckpoint(messages=[ChatMessage(role="assistant", content="other")])}
    )
    await log.ingest(LOG_ENTRY.validate_json(second.model_dump_json()))
    assert (await store.context(scope, "t1", limit=10)).produced == produced


async def test_a_turn_forwarded_begun_carries_the_context_getcontext_would_give(store: Store, scope: Scope) -> None:
    """Memory reads the window and the recalled knowledge together for a forwarded turn
    (it has the user's text at hand); what it sends is what `GetContext` assembles."""
    assembler = ContextAssembler(store, window_messages=40, window_tokens=4000, recall_facts=4, recall_tasks=4)
    log = ConversationLog(store, TOPOLOGY, assembler)
    await store.claim_conversation(scope)
    await store.remember_fact(scope, None, "the user's cat is called Miso", "preference", time.time())
    await store.update_task(scope, None, "plan the trip", "open", "", time.time())
    _, forward = await log.ingest(turn(scope, "t1", "what is my cat called?"))
    begun = TurnRequested.model_validate_json(forward.body).begun
    assert begun is not None and begun.context is not None
    expected = await assembler.assemble(scope, "t1")
    assert begun.context.messages == expected.messages
    [knowledge] = [m for m in expected.messages if m.role == "system"]
    assert "Miso" in (knowledge.content or "") and "plan the trip" in (knowledge.content or "")
    # Sent without null fields (a context's messages had three each): the same turn, fewer bytes.
    assert b"null" not in forward.body
