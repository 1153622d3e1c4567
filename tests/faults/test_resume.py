"""A client loses its socket mid-turn and resumes on another gateway replica."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect

from tests.client import next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.stack import Stack, free_port


async def test_resume_on_another_gateway_replays_without_gap_or_duplicate(fault_stack: Stack) -> None:
    second = fault_stack.start("gateway", port=free_port())
    fault_stack.wait_ready(second)
    before: list[dict[str, Any]] = []
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": "count to 80"})
        while len([f for f in before if f["type"] == "message.delta"]) < 5:
            before.append(await next_frame(ws))
    # The socket is gone; frames keep coming for the conversation meanwhile.
    last_seen = before[-1]["seq"]
    conversation = before[0]["conversation_id"]
    async with connect(f"ws://127.0.0.1:{second.port}/ws") as ws:
        await send(ws, {"type": "resume", "conversation_id": conversation, "after_seq": last_seen})
        after = await until_turn_ends(ws)
    assert after[0]["seq"] == last_seen + 1  # no gap
    frames = [f for f in before if f["type"] != "message.accepted"] + after
    assert assert_clean_stream(frames) == " ".join(str(i) for i in range(1, 81))


async def test_resume_of_a_finished_turn_replays_it_whole(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": "what is 6*7?"})
        original = await until_turn_ends(ws)
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "resume", "conversation_id": original[0]["conversation_id"], "after_seq": 0})
        replay = await until_turn_ends(ws)
    assert replay == original


async def test_resume_of_someone_elses_conversation_is_refused(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url + "?user=owner") as ws:
        await send(ws, {"type": "message", "text": "secret"})
        conversation = (await until_turn_ends(ws))[0]["conversation_id"]
    async with connect(fault_stack.ws_url + "?user=intruder") as ws:
        await send(ws, {"type": "resume", "conversation_id": conversation, "after_seq": 0})
        error = await next_frame(ws)
    assert error["type"] == "error" and error["code"] == "forbidden"
