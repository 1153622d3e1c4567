"""SIGTERM mid-turn, turn deadlines, a model that errors or hangs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.client import converse, next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.faults.conftest import holder
from tests.stack import Stack, free_port


async def test_sigterm_lets_the_turn_in_hand_finish_and_exits_zero(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": "count to 40"})
        frames = []
        while (frame := await next_frame(ws))["type"] != "message.delta":
            frames.append(frame)
        frames.append(frame)
        victim = holder(fault_stack, "reasoner", "agentry_reasoner_turns_in_flight")
        victim.process.send_signal(signal.SIGTERM)
        frames += await until_turn_ends(ws)
        code = await asyncio.to_thread(victim.process.wait, 30)
    assert code == 0
    assert assert_clean_stream(frames) == " ".join(str(i) for i in range(1, 41))
    assert not any(f["type"] == "message.reset" for f in frames)  # finished, not handed over


async def test_sigterm_with_a_short_grace_hands_the_turn_to_another_replica(tmp_path: Path) -> None:
    stack = Stack(tmp_path, OFFLINE_MODEL_CHUNK_DELAY_MS="30", SHUTDOWN_GRACE_SECONDS="0.5")
    try:
        stack.start_all()
        stack.wait_ready(stack.start("reasoner", port=free_port()))
        async with connect(stack.ws_url) as ws:
            await send(ws, {"type": "message", "text": "count to 100"})
            frames = []
            while (frame := await next_frame(ws))["type"] != "message.delta":
                frames.append(frame)
            frames.append(frame)
            victim = holder(stack, "reasoner", "agentry_reasoner_turns_in_flight")
            victim.process.send_signal(signal.SIGTERM)
            frames += await until_turn_ends(ws, timeout=60)
            assert await asyncio.to_thread(victim.process.wait, 30) == 0
        assert assert_clean_stream(frames) == " ".join(str(i) for i in range(1, 101))
        # Handed over, not finished in the grace: the next replica resumed it.
        assert any(f["type"] == "message.reset" for f in frames)
    finally:
        stack.close()


@pytest.fixture
def deadline_stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, REASONER_TURN_DEADLINE_SECONDS="2", LLM_TIMEOUT_SECONDS="60", LLM_MAX_RETRIES="0")
    try:
        s.start_all()
        yield s
    finally:
        s.close()


async def test_a_turn_past_its_deadline_fails_with_deadline_exceeded(deadline_stack: Stack) -> None:
    async with connect(deadline_stack.ws_url) as ws:
        frames = await converse(ws, "take your time [[model-hang]]")
        assert frames[-1]["type"] == "turn.failed"
        assert frames[-1]["error"]["code"] == "deadline_exceeded"
        assert "REASONER_TURN_DEADLINE_SECONDS" in frames[-1]["error"]["message"]  # which limit
        again = await converse(ws, "what is 2+2?", conversation_id=frames[0]["conversation_id"])
        assert "4" in again[-1]["text"]
