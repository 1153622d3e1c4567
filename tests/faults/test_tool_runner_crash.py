"""kill -9 of the tool-runner running a call: another worker runs it again (the tool is
idempotent) and the turn completes; no process of the call outlives its worker."""

from __future__ import annotations

import asyncio
import os
import signal

from websockets.asyncio.client import connect

from tests.client import next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.faults.conftest import holder
from tests.stack import Proc, Stack, free_port

SLOW = "run this python:\n```python\nimport time\ntime.sleep(2)\nprint('slept well')\n```"


async def eventually_holder(stack: Stack) -> Proc:
    """tool.started goes out as the call is sent: give a worker a moment to take it."""
    for _ in range(40):
        try:
            return holder(stack, "tool-runner", "agentry_tool_calls_in_flight")
        except AssertionError:
            await asyncio.sleep(0.05)
    return holder(stack, "tool-runner", "agentry_tool_calls_in_flight")


async def test_kill_the_worker_mid_call_another_worker_finishes_it(fault_stack: Stack) -> None:
    fault_stack.wait_ready(fault_stack.start("tool-runner", port=free_port()))
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": SLOW})
        frames = []
        while (frame := await next_frame(ws))["type"] != "tool.started":
            frames.append(frame)
        frames.append(frame)
        victim = await eventually_holder(fault_stack)
        os.kill(victim.process.pid, signal.SIGKILL)
        frames += await until_turn_ends(ws, timeout=90)
    answer = assert_clean_stream([f for f in frames if f["type"] != "message.accepted"])
    assert "slept well" in answer
    finished = [f for f in frames if f["type"] == "tool.finished"]
    assert [f["ok"] for f in finished] == [True]
