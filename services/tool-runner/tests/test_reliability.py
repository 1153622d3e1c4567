"""Exactly-once, cancel, a worker killed mid-call and a dropped connection, against the
real RabbitMQ. Memory is `MemoryStandIn` (conftest.py). Real executions are counted by
the `probe_record_*` tools, which append their pid to a file per run.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.memory import ClaimToolCall
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted, ToolRequested
from agentry_shared.logs import JsonFormatter
from agentry_shared.testing import CuttableProxy, until
from agentry_tool_runner.calls.lifecycle import Calls

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from agentry_shared.testing import MemoryStandIn
    from conftest import RunnerFactory, WorkerFactory

SCOPE = Scope(tenant_id="t1", user_id="u1", conversation_id="c1")


def request(tool: str, path: Path, seconds: float = 0.0, turn_id: str | None = None) -> ToolRequested:
    return ToolRequested(
        scope=SCOPE,
        turn_id=turn_id or f"turn-{uuid.uuid4().hex}",
        call_id=f"call-{uuid.uuid4().hex[:8]}",
        tool=tool,
        arguments={"path": str(path), "seconds": seconds},
        deadline=time.time() + 60,
    )


async def call(bus: Bus, asked: ToolRequested, timeout: float = 20) -> ToolCompleted:
    body = await bus.request(bus.topology.tool_pool("default"), encode(asked), timeout=timeout)
    reply = TOOL_REPLY.validate_json(body)
    assert isinstance(reply, ToolCompleted)
    assert (reply.call_id, reply.tool) == (asked.call_id, asked.tool)
    return reply


def runs(path: Path) -> list[int]:
    """The pids of the real executions so far."""
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def first_run(path: Path) -> int:
    for _ in range(200):
        if runs(path):
            return runs(path)[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the tool never started")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie runs nothing


async def gone_within(seconds: float, pid: int) -> bool:
    for _ in range(int(seconds / 0.02)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return not alive(pid)


def code(reply: ToolCompleted) -> str | None:
    return reply.error.code if reply.error else None


async def test_a_done_call_is_not_run_again(client: Bus, memory: MemoryStandIn, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    asked = request("probe_record_read_only", log)
    first = await call(client, asked)
    assert (first.ok, first.output, len(runs(log))) == (True, "recorded", 1)
    assert memory.kept(asked.turn_id, asked.call_id) == first.model_copy(update={"duration_ms": first.duration_ms})

    again = await call(client, asked)  # the same call asked again (a resumed turn)
    assert (again.ok, again.output, again.duration_ms) == (True, "recorded", first.duration_ms)
    assert len(runs(log)) == 1

    # Kept by an earlier runner: replied as kept, even for a destructive tool.
    earlier = request("probe_record_destructive", log)
    kept = ToolCompleted(call_id=earlier.call_id, tool=earlier.tool, ok=True, output="kept earlier")
    memory.seed(earlier.turn_id, earlier.call_id, "done", result=kept)
    assert (await call(client, earlier)).output == "kept earlier"
    assert len(runs(log)) == 1


async def test_a_pure_function_is_neither_claimed_nor_kept(client: Bus, memory: MemoryStandIn) -> None:
    """The calculator runs in the worker and has no effect: asked twice, it is computed
    twice, and memory is never asked (the two round trips a claimed call costs)."""
    asked = ToolRequested(
        scope=SCOPE,
        turn_id=f"turn-{uuid.uuid4().hex}",
        call_id="call-pure",
        tool="calculator",
        arguments={"expression": "37*91"},
        deadline=time.time() + 60,
    )
    for _ in range(2):
        reply = await call(client, asked)
        assert (reply.ok, reply.output) == (True, "3367")
    assert [r.kind for r in memory.requests] == []
    assert memory.kept(asked.turn_id, asked.call_id) is None


async def test_a_call_held_by_a_live_runner_is_waited_for(client: Bus, memory: MemoryStandIn, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    asked = request("probe_record_destructive", log)
    memory.seed(asked.turn_id, asked.call_id, "running", age=0.0)
    pending = asyncio.create_task(call(client, asked))
    # The runner has found the claim held (else the 1 s below would say nothing), ...
    await until(lambda: bool(memory.requests_of(ClaimToolCall)), "the runner asks memory for the claim")
    await asyncio.sleep(1.0)  # ... and still waits for its holder
    assert not pending.done()
    other = ToolCompleted(call_id=asked.call_id, tool=asked.tool, ok=True, output="from the holder")
    memory.seed(asked.turn_id, asked.call_id, "done", result=other)
    reply = await asyncio.wait_for(pending, 5)
    assert (reply.ok, reply.output, runs(log)) == (True, "from the holder", [])


async def test_a_stale_destructive_call_is_interrupted_not_run(
    client: Bus, memory: MemoryStandIn, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    asked = request("probe_record_destructive", log)
    memory.seed(asked.turn_id, asked.call_id, "running", age=3600)  # its holder died long ago
    reply = await call(client, asked)
    assert code(reply) == "interrupted" and reply.error is not None
    assert "may or may not have taken effect" in reply.error.message
    assert runs(log) == []
    kept = memory.kept(asked.turn_id, asked.call_id)
    assert kept is not None and code(kept) == "interrupted"


async def test_a_stale_idempotent_call_is_run_again(client: Bus, memory: MemoryStandIn, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    asked = request("probe_record_idempotent", log)
    memory.seed(asked.turn_id, asked.call_id, "running", age=3600)
    reply = await call(client, asked)
    assert (reply.ok, len(runs(log))) == (True, 1)
    kept = memory.kept(asked.turn_id, asked.call_id)
    assert kept is not None and kept.ok


async def test_without_memory_only_repeatable_tools_run(client: Bus, memory: MemoryStandIn, tmp_path: Path) -> None:
    memory.silent = True
    log = tmp_path / "runs"
    refused = await call(client, request("probe_record_destructive", log))
    assert code(refused) == "unavailable" and runs(log) == []
    ran = await call(client, request("probe_record_read_only", log))
    assert ran.ok and len(runs(log)) == 1


async def test_cancel_kills_the_turns_calls_and_replies_cancelled(
    client: Bus, memory: MemoryStandIn, tmp_path: Path
) -> None:
    log, other_log = tmp_path / "runs", tmp_path / "other"
    asked = request("probe_record_destructive", log, seconds=60)
    other = request("probe_record_read_only", other_log, seconds=1.5)  # another turn: left alone
    pending = asyncio.create_task(call(client, asked))
    bystander = asyncio.create_task(call(client, other))
    pid = await first_run(log)
    await first_run(other_log)

    cancel = CancelRequested(conversation_id=SCOPE.conversation_id, turn_id=asked.turn_id)
    started = time.monotonic()
    await client.publish(client.topology.control_exchange, "", encode(cancel), persistent=False)
    reply = await asyncio.wait_for(pending, 5)
    assert time.monotonic() - started < 1.0
    assert code(reply) == "cancelled" and reply.error is not None
    assert "may or may not have taken effect" in reply.error.message  # destructive
    assert await gone_within(1.0, pid)
    kept = memory.kept(asked.turn_id, asked.call_id)
    assert kept is not None and code(kept) == "cancelled"
    assert (await bystander).ok

    # A call of the cancelled turn that arrives afterwards is not run.
    late = await call(client, request("probe_record_read_only", log, turn_id=asked.turn_id))
    assert code(late) == "cancelled" and len(runs(log)) == 1


async def test_a_worker_killed_mid_call_takes_its_child_along(
    bus: Bus, memory: MemoryStandIn, start_runner: RunnerFactory, start_worker_process: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    asked = request("probe_record_destructive", log, seconds=60)
    async with start_worker_process(tmp_path / "worker.log") as worker:
        pending = asyncio.create_task(call(bus, asked, timeout=40))
        child = await first_run(log)
        scratch = Path(f"/proc/{child}/cwd").readlink()  # left behind: no clean-up survives kill -9
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert await gone_within(2.0, child), "the tool's child outlived its SIGKILLed worker"
    shutil.rmtree(scratch, ignore_errors=True)

    # The unacked request goes back to the queue; another worker gets it, redelivered.
    async with start_runner():
        reply = await asyncio.wait_for(pending, 30)
    assert code(reply) == "interrupted"
    assert runs(log) == [child]  # not run twice
    kept = memory.kept(asked.turn_id, asked.call_id)
    assert kept is not None and code(kept) == "interrupted"


async def test_a_result_finished_while_disconnected_is_not_lost(
    bus: Bus, memory: MemoryStandIn, start_runner: RunnerFactory, tmp_path: Path
) -> None:
    proxy = CuttableProxy(("127.0.0.1", 5672))
    await proxy.start()
    try:
        async with start_runner(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"):
            log = tmp_path / "runs"
            asked = request("probe_record_destructive", log, seconds=1.0)
            pending = asyncio.create_task(call(bus, asked, timeout=40))
            await first_run(log)
            proxy.cut()  # the call finishes while the runner is disconnected (reconnect: ~5 s)
            proxy.mend()  # new connections go through at once, as before the shared relay
            reply = await asyncio.wait_for(pending, 40)
            # Not "interrupted": the redelivered request found the call still in hand here.
            assert (reply.ok, reply.output) == (True, "recorded")
            assert len(runs(log)) == 1
            kept = memory.kept(asked.turn_id, asked.call_id)
    finally:
        await proxy.close()
    assert kept is not None, "the result was not recorded in memory after the reconnect"
    assert kept.ok


async def test_a_call_that_raises_is_logged_with_its_turn_and_handed_back(
    client: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error out of a call's handling is logged with the call's turn_id (an operator
    finds the turn) and the request goes back to the broker, so a redelivery answers it
    instead of it staying unacked until the connection closes."""
    answer = Calls.answer
    failed: list[str] = []

    async def fails_once(self: Calls, tool: Any, asked: ToolRequested, *, redelivered: bool) -> ToolCompleted | None:
        if not failed:
            failed.append(asked.call_id)
            raise RuntimeError("a bug in the call's handling")
        return await answer(self, tool, asked, redelivered=redelivered)

    monkeypatch.setattr(Calls, "answer", fails_once)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("tool-runner"))
    logging.getLogger("agentry_tool_runner").addHandler(handler)
    try:
        asked = request("probe_record_read_only", tmp_path / "runs")
        reply = await call(client, asked)
    finally:
        logging.getLogger("agentry_tool_runner").removeHandler(handler)
    assert (reply.ok, reply.output, failed) == (True, "recorded", [asked.call_id])
    errors = [json.loads(line) for line in lines.getvalue().splitlines() if '"level": "error"' in line]
    assert [(e["msg"], e.get("turn_id"), e.get("call_id")) for e in errors] == [
        ("tool call failed; handed back to the broker", asked.turn_id, asked.call_id)
    ]
