"""kill -9 of the tool-runner running a call: another worker runs it again (the tool is
idempotent) and the turn completes; no process of the call outlives its worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from agentry_shared.testing import until
from websockets.asyncio.client import connect

from tests.client import next_frame, send, until_turn_ends
from tests.faults.checks import assert_clean_stream
from tests.faults.conftest import holder, metric
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


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (its children, theirs, ...)."""
    parents = {int(e.name): _stat(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()}
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, stat in parents.items():
            if stat is not None and stat[1] == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has ended


async def test_kill_the_worker_mid_call_another_worker_finishes_it(fault_stack: Stack) -> None:
    fault_stack.wait_ready(fault_stack.start("tool-runner", port=free_port()))
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": SLOW})
        frames = []
        while (frame := await next_frame(ws))["type"] != "tool.started":
            frames.append(frame)
        frames.append(frame)
        victim = await eventually_holder(fault_stack)
        children = descendants(victim.process.pid)
        assert children, "the call's process is not running under its worker"
        os.kill(victim.process.pid, signal.SIGKILL)
        # The call sleeps 2 s: its processes must die with the worker, not finish their sleep.
        await until(lambda: not any(running(pid) for pid in children), "the call's processes die", timeout_s=1.0)
        frames += await until_turn_ends(ws, timeout=90)
    answer = assert_clean_stream([f for f in frames if f["type"] != "message.accepted"])
    assert "slept well" in answer
    finished = [f for f in frames if f["type"] == "tool.finished"]
    assert [f["ok"] for f in finished] == [True]
    survivors = fault_stack.replicas("tool-runner")
    assert sum(metric(p, "agentry_tool_executions_total") for p in survivors) == 1  # run again, once
