"""kill -9 of the reasoner holding a turn: another replica finishes it, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal

from websockets.asyncio.client import connect

from tests.client import next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.faults.conftest import holder, metric
from tests.stack import Stack

COUNT = " ".join(str(i) for i in range(1, 121))
RUN_PYTHON = "run this python:\n```python\nprint(6*7)\n```"


async def _kill_holder_when(stack: Stack, text: str, frame_type: str) -> list[dict[str, object]]:
    async with connect(stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": text})
        frames = []
        while True:
            frame = await next_frame(ws)
            frames.append(frame)
            if frame["type"] == frame_type:
                break
        victim = holder(stack, "reasoner", "agentry_reasoner_turns_in_flight")
        os.kill(victim.process.pid, signal.SIGKILL)
        frames += await until_turn_ends(ws, timeout=60)
    return frames


async def test_kill_while_the_model_streams(fault_stack: Stack) -> None:
    frames = await _kill_holder_when(fault_stack, "count to 120", "message.delta")
    assert assert_clean_stream(frames) == COUNT
    assert any(f["type"] == "message.reset" for f in frames)


async def test_kill_while_waiting_for_a_tool_does_not_run_it_twice(fault_stack: Stack) -> None:
    """A sandboxed tool (code of the model's): its call was checkpointed before it ran, so
    the resumed turn asks for the same call and gets the kept result."""
    frames = await _kill_holder_when(fault_stack, RUN_PYTHON, "tool.started")
    assert "42" in assert_clean_stream(frames)
    assert _resumed(frames)
    runners = [p for p in fault_stack.procs if p.name == "tool-runner"]
    executed = sum(metric(p, "agentry_tool_executions_total") for p in runners)
    assert executed == 1, executed


async def test_kill_while_a_pure_tool_runs_answers_once(fault_stack: Stack) -> None:
    """A pure function's call is not checkpointed before it runs: the resumed turn asks the
    model again and computes it again, which has no effect; the client still gets one
    clean answer."""
    frames = await _kill_holder_when(fault_stack, "what is 37*91?", "tool.started")
    assert "3367" in assert_clean_stream(frames)
    assert _resumed(frames)  # the kill hit the turn, and another replica took it over


async def test_kill_repeatedly_across_many_turns(fault_stack: Stack) -> None:
    """Three turns in a row, each with its holder killed and a fresh replica started."""
    for _ in range(3):
        frames = await _kill_holder_when(fault_stack, "count to 60", "message.delta")
        assert assert_clean_stream(frames) == " ".join(str(i) for i in range(1, 61))
        fault_stack.wait_ready(fault_stack.start("reasoner", port=_port()))
        await asyncio.sleep(0)


def _resumed(frames: list[dict[str, object]]) -> bool:
    return any(f["type"] == "message.reset" and f.get("reason") == "resumed" for f in frames)


def _port() -> int:
    from tests.stack import free_port

    return free_port()
