"""`make run` restarts a dead service; a turn that keeps killing reasoners is dead-lettered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tests.client import answer, converse, next_frame, send
from tests.faults.conftest import holder
from tests.stack import ORDER, PORT_VARS, Stack, free_port

ROOT = Path(__file__).resolve().parents[2]


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and f"agentry-{name}" in cmdline:
            found.append(int(entry.name))
    return found


async def test_supervisor_restarts_a_killed_service_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    stack = Stack(tmp_path)  # only for its namespace, ports and settings
    env = {**os.environ, **stack.env}
    supervisor = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_all.py")],
        env=env,
        stdout=(tmp_path / "run.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while b"Agentry is up" not in (tmp_path / "run.log").read_bytes():
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            await asyncio.sleep(0.2)
        (memory_pid,) = children_named(supervisor.pid, "memory")
        os.kill(memory_pid, signal.SIGKILL)
        while True:
            assert time.monotonic() < deadline + 30, "memory was not restarted"
            restarted = children_named(supervisor.pid, "memory")
            if restarted and restarted != [memory_pid]:
                break
            await asyncio.sleep(0.2)
        async with connect(stack.ws_url) as ws:
            for _ in range(50):  # until the restarted memory answers
                frames = await converse(ws, "what is 37*91?")
                if frames[0]["type"] != "error":
                    break
                await asyncio.sleep(0.2)
            assert "3367" in answer(frames)
        others = {name: children_named(supervisor.pid, name) for name in ORDER}
        assert all(len(pids) == 1 for pids in others.values()), others
        supervisor.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(supervisor.wait, 60) == 0
        for pids in others.values():
            assert not Path(f"/proc/{pids[0]}").exists()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        from tests.stack import delete_namespace

        await delete_namespace(stack.namespace, int(stack.env["AGENTRY_PARTITIONS"]))
    assert set(PORT_VARS) == set(ORDER)


async def test_a_turn_that_keeps_killing_reasoners_is_dead_lettered_and_the_user_told(tmp_path: Path) -> None:
    stack = Stack(tmp_path, AGENTRY_DELIVERY_LIMIT="1")
    try:
        stack.start_all()
        async with connect(stack.ws_url) as ws:
            await send(ws, {"type": "message", "text": "this one hangs [[model-hang]]"})
            conversation = (await next_frame(ws))["conversation_id"]
            kills = 0
            while (frame := await next_frame(ws, timeout=30))["type"] != "turn.failed":
                if frame["type"] == "thinking.started":  # an attempt is under way: it "crashes"
                    assert kills < 4, "the turn was never dead-lettered"
                    victim = holder(stack, "reasoner", "agentry_reasoner_turns_in_flight")
                    os.kill(victim.process.pid, signal.SIGKILL)
                    kills += 1
                    stack.wait_ready(stack.start("reasoner", port=free_port()))
            assert frame["error"]["code"] == "poison", frame
            assert kills >= 1
            # The conversation carries on.
            assert "4" in answer(await converse(ws, "what is 2+2?", conversation_id=conversation))
    finally:
        stack.close()
