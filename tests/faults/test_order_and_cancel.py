"""Order per conversation with two reasoner replicas, and the stop button."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.client import answer, converse, next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.stack import Stack

TERMINAL = ("turn.completed", "turn.failed")


def turn_frames(frames: list[dict[str, Any]], turn_id: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["turn_id"] == turn_id and f["type"] != "message.accepted"]


async def collect_turns(ws: ClientConnection, count: int, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    while sum(f["type"] in ("turn.completed", "turn.failed") for f in frames) < count:
        frames.append(await next_frame(ws, timeout=60))
    return frames


async def test_turns_of_one_conversation_run_in_order_and_others_are_not_held_up(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws, connect(fault_stack.ws_url) as other:
        opening = await converse(ws, "hello")
        conversation = opening[0]["conversation_id"]
        texts = ["count to 60", "what is 2*3?", "what is 4*5?", "what was my previous question?"]
        for i, text in enumerate(texts):
            await send(ws, {"type": "message", "text": text, "conversation_id": conversation, "id": f"m{i}"})
        # Another conversation is answered while this one's turns are queued.
        frames: list[dict[str, Any]] = []

        async def quick_turn() -> tuple[list[dict[str, Any]], int]:
            reply = await converse(other, "what is 1+2?")
            return reply, sum(f["type"] in TERMINAL for f in frames)  # this conversation's turns ended by then

        _, (quick, ended_before) = await asyncio.gather(collect_turns(ws, 4, frames), quick_turn())
    assert "3" in answer(quick)
    assert ended_before == 0, "the other conversation waited for this one's turns"
    accepted = [f for f in frames if f["type"] == "message.accepted"]
    assert [f["id"] for f in accepted] == ["m0", "m1", "m2", "m3"]
    first_end = next(i for i, f in enumerate(frames) if f["type"] == "turn.completed")
    assert all(frames.index(f) < first_end for f in accepted)  # all accepted at once, not when run
    ids = [f["turn_id"] for f in accepted]
    ends = [f for f in frames if f["type"] in ("turn.completed", "turn.failed")]
    assert [f["turn_id"] for f in ends] == ids  # finished in the order accepted
    starts = [f["turn_id"] for f in frames if f["type"] == "turn.started"]
    assert starts == ids
    # One turn at a time: each turn starts after the previous one ended.
    position = {(f["turn_id"], f["type"]): i for i, f in enumerate(frames)}
    for before, after in itertools.pairwise(ids):
        assert position[(after, "turn.started")] > max(position.get((before, end), -1) for end in TERMINAL)
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(opening[-1]["seq"] + 1, opening[-1]["seq"] + 1 + len(seqs))), f"seq has a gap: {seqs}"
    answers = [assert_clean_stream(turn_frames(frames, t), gap_free=False) for t in ids]
    assert answers[0].startswith("1 2 3") and "6" in answers[1] and "20" in answers[2]
    assert "what is 4*5?" in answers[3]  # the fourth turn saw the third in its context


async def test_cancel_stops_a_streaming_turn_long_before_its_end(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": "count to 400"})
        while (frame := await next_frame(ws))["type"] != "message.delta":
            pass
        started = time.monotonic()
        await send(ws, {"type": "cancel", "turn_id": frame["turn_id"]})
        rest = await until_turn_ends(ws, timeout=10)
        elapsed = time.monotonic() - started
        end = rest[-1]
        assert end["type"] == "turn.failed" and end["error"]["code"] == "cancelled"
        assert elapsed < 5, elapsed  # count to 400 takes ~12 s at this model's pace
        # The conversation takes the next message.
        after = await converse(ws, "what is 3*3?", conversation_id=frame["conversation_id"])
        assert "9" in answer(after)


async def test_cancel_of_a_queued_turn(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws:
        first = await converse(ws, "hi")
        conversation = first[0]["conversation_id"]
        await send(ws, {"type": "message", "text": "count to 100", "conversation_id": conversation})
        await send(ws, {"type": "message", "text": "what is 5*5?", "conversation_id": conversation})
        accepted = [await next_frame(ws), await next_frame(ws)]
        assert [f["type"] for f in accepted] == ["message.accepted", "message.accepted"]
        await send(ws, {"type": "cancel", "turn_id": accepted[1]["turn_id"]})
        long_turn = await until_turn_ends(ws)
        queued_turn = await until_turn_ends(ws)
    assert long_turn[-1]["type"] == "turn.completed"
    assert queued_turn[-1]["turn_id"] == accepted[1]["turn_id"]
    assert queued_turn[-1]["type"] == "turn.failed" and queued_turn[-1]["error"]["code"] == "cancelled"
    assert not [f for f in queued_turn if f["type"] in ("message.delta", "tool.started")]  # it never ran
    await asyncio.sleep(0)
