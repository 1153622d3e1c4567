"""A conversation end to end: client socket -> gateway -> broker -> memory -> reasoner ->
offline model over HTTP -> tool-runner child process -> back to the socket."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from agentry_client import AgentryClient
from websockets.asyncio.client import connect

from tests.client import answer, converse, converse_with, next_frame, send, until_turn_ends
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def test_arithmetic_question_streams_every_phase_and_the_answer(stack: Stack) -> None:
    async with AgentryClient(stack.ws_url) as client:
        frames = await converse_with(client, "what is 37*91?", client_id="m-1")

    kinds = [f["type"] for f in frames]
    assert kinds[0] == "message.accepted" and frames[0]["id"] == "m-1"
    assert kinds[1] == "turn.started"
    for expected in ("thinking.started", "thinking.finished", "tool.started", "tool.finished", "message.delta"):
        assert expected in kinds, kinds
    assert kinds.index("thinking.started") < kinds.index("thinking.finished") < kinds.index("tool.started")
    tool_frames = [f for f in frames if f["type"] in ("tool.started", "tool.finished")]
    assert {f["tool"] for f in tool_frames} == {"calculator"}
    assert [f["ok"] for f in frames if f["type"] == "tool.finished"] == [True]
    assert isinstance(frames[kinds.index("thinking.finished")]["elapsed_ms"], int)
    assert "3367" in answer(frames)
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)), seqs
    conversation = frames[0]["conversation_id"]
    assert all(f["conversation_id"] == conversation for f in frames)
    assert len({f["turn_id"] for f in frames}) == 1


async def test_second_message_sees_the_first_exchange(stack: Stack) -> None:
    async with AgentryClient(stack.ws_url) as client:
        first = await converse_with(client, "what is 37*91?")
        conversation = first[0]["conversation_id"]
        second = await converse_with(client, "what was my previous question?", conversation_id=conversation)
    reply = answer(second)
    assert "what is 37*91?" in reply
    assert "3367" in reply  # the model also saw its own earlier answer
    assert second[0]["seq"] > first[-1]["seq"]


async def test_a_message_sent_while_the_previous_turn_runs_sees_its_answer(stack: Stack) -> None:
    """The answer is stored with `turn.completed`, in the log; the next turn, already
    queued, begins as soon as that entry is confirmed: its context must still hold it."""
    for _ in range(3):
        async with connect(f"{stack.ws_url}?user=pipelined") as ws:
            await send(ws, {"type": "message", "text": "what is 37*91?"})
            accepted = await next_frame(ws)
            assert accepted["type"] == "message.accepted"
            conversation = accepted["conversation_id"]
            await send(
                ws, {"type": "message", "text": "what was my previous question?", "conversation_id": conversation}
            )
            ends: list[dict[str, object]] = []
            while len(ends) < 2:
                frame = await next_frame(ws, timeout=30)
                if frame["type"] in ("turn.completed", "turn.failed"):
                    ends.append(frame)
        assert [end["type"] for end in ends] == ["turn.completed", "turn.completed"]
        assert "3367" in str(ends[0]["text"])
        assert "what is 37*91?" in str(ends[1]["text"]) and "3367" in str(ends[1]["text"])


async def test_two_conversations_at_once_never_see_each_others_frames(stack: Stack) -> None:
    async with AgentryClient(stack.ws_url, user="alice") as a, AgentryClient(stack.ws_url, user="bob") as b:
        frames_a, frames_b = await asyncio.gather(converse_with(a, "what is 12*12?"), converse_with(b, "what is 7+8?"))
    assert len({f["conversation_id"] for f in frames_a}) == 1
    assert len({f["conversation_id"] for f in frames_b}) == 1
    assert frames_a[0]["conversation_id"] != frames_b[0]["conversation_id"]
    assert "144" in answer(frames_a) and "15" in answer(frames_b)


async def test_two_sockets_on_one_conversation_both_get_the_stream(stack: Stack) -> None:
    async with connect(stack.ws_url) as first, connect(stack.ws_url) as second:
        opening = await converse(first, "hello there")
        conversation = opening[0]["conversation_id"]
        # The second tab joins by posting to the same conversation; both see the turn.
        await send(second, {"type": "message", "text": "what is 2*21?", "conversation_id": conversation})
        on_second, on_first = await asyncio.gather(until_turn_ends(second), until_turn_ends(first))
    assert "42" in answer(on_second) and answer(on_first) == answer(on_second)
    assert [f["seq"] for f in on_first] == [f["seq"] for f in on_second]


async def test_another_user_cannot_post_to_a_conversation(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=carol") as carol, connect(stack.ws_url + "?user=mallory") as mallory:
        conversation = (await converse(carol, "hi"))[0]["conversation_id"]
        await send(mallory, {"type": "message", "text": "hi", "conversation_id": conversation})
        error = await next_frame(mallory)
        assert error["type"] == "error" and error["code"] == "forbidden"
        # Mallory's socket still works for her own conversations.
        assert answer(await converse(mallory, "what is 1+1?")).count("2") >= 1


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json at all", "invalid_json"),
    ("[1, 2, 3]", "invalid_frame"),
    (json.dumps({"type": "dance"}), "unknown_type"),
    (json.dumps({"type": "message"}), "invalid_message"),
    (json.dumps({"type": "message", "text": ""}), "invalid_message"),
    (json.dumps({"type": "message", "text": "x" * (1024 * 1024 + 10)}), "frame_too_large"),
    (b"\x00\x01binary", "binary_not_supported"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES, ids=[code for _, code in BAD_FRAMES])
async def test_bad_input_gets_an_error_frame_and_the_socket_keeps_working(
    stack: Stack, raw: str | bytes, code: str
) -> None:
    async with connect(stack.ws_url, max_size=None) as ws:
        await ws.send(raw)
        error = await next_frame(ws)
        assert error["type"] == "error" and error["code"] == code, error
        assert error["message"]
        assert "3367" in answer(await converse(ws, "what is 37*91?"))


async def test_no_frame_carries_the_models_reasoning(stack: Stack) -> None:
    raw_frames: list[str] = []
    async with connect(stack.ws_url) as ws:
        for text in ("what is 37*91?", "tell me something", "what time is it?"):
            await send(ws, {"type": "message", "text": text})
            while True:
                raw = await asyncio.wait_for(ws.recv(), 30)
                assert isinstance(raw, str)
                raw_frames.append(raw)
                if json.loads(raw)["type"] in ("turn.completed", "turn.failed"):
                    break
    assert sum('"thinking.finished"' in r for r in raw_frames) >= 3  # the model did think
    for raw in raw_frames:
        assert "[reasoning]" not in raw
        assert "reasoning_content" not in raw


def test_health_ready_and_metrics_on_every_service(stack: Stack) -> None:
    for name in stack.ports:
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(stack.http(name, path), timeout=5) as reply:
                assert reply.status == 200, (name, path)
        with urllib.request.urlopen(stack.http(name, "/metrics"), timeout=5) as reply:
            assert b"# TYPE" in reply.read()
