"""Tool-runner: what the sandbox costs per call, and a tool call's round trip over the broker.

Rows (50 runs each, after 3 warm-up runs):
- the same Python code as a bare subprocess (`/usr/bin/python3 -I -S -c`);
- the calculator through the plain child (`PlainProcessExecutor`: no sandbox, worker's uid);
- the calculator through the sandbox (`SandboxExecutor`: bwrap, uid 65534, rlimits);
- the same code through the `python` tool in the sandbox (bwrap + the child + the
  program's own interpreter), spawn to result;
- a calculator call through the broker: ToolRequested -> a worker process started here
  (`python -m agentry_tool_runner`, a namespace of its own, deleted afterwards) -> claim
  and record in a memory stand-in (answers at once; the real memory service adds its
  store writes) -> ToolCompleted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted, ToolRequested
from agentry_shared.settings import ToolRunnerSettings
from agentry_shared.testing import MemoryStandIn
from agentry_shared.topology import Topology
from agentry_tool_runner.execution.executor import PlainProcessExecutor
from agentry_tool_runner.execution.resources import SAMPLE_DOCS, Resources
from agentry_tool_runner.execution.sandbox import SANDBOX_PYTHON, SandboxExecutor
from agentry_tool_runner.tools.registry import REGISTRY

RUNS, WARM_UP = 50, 3
CODE = "print(sum(range(1000)))"
SCOPE = Scope(tenant_id="bench", user_id="bench", conversation_id="bench")


async def measure(step: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(WARM_UP):
        await step()
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await step()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def row(name: str, timings: list[float]) -> str:
    cuts = statistics.quantiles(timings, n=20)
    return f"| {name} | {statistics.median(timings):.1f} | {cuts[18]:.1f} | {len(timings)} |"


async def bare() -> None:
    process = await asyncio.create_subprocess_exec(
        SANDBOX_PYTHON, "-I", "-S", "-c", CODE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert out.strip() == b"499500", out


def through(executor: PlainProcessExecutor, tool: str, arguments: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    declared = REGISTRY.get(tool)
    assert declared is not None

    async def step() -> None:
        result = await executor.run(declared, arguments, SCOPE)
        assert result.ok, result.error

    return step


async def broker_round_trip(workspaces: Path) -> list[float]:
    settings = ToolRunnerSettings()
    topology = Topology(f"bench{uuid.uuid4().hex[:12]}", 2)
    bus = Bus(settings.amqp_url.get_secret_value(), topology, name="bench-tools")
    await bus.connect()
    stand_in = MemoryStandIn(bus)  # claims each call at once (`new`, then `Done`), as a quick memory would
    await stand_in.start()
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "AGENTRY_NAMESPACE": topology.namespace, "AGENTRY_PARTITIONS": "2"}
    env |= {"TOOL_RUNNER_PORT": str(port), "TOOL_RUNNER_WORKSPACE_DIR": str(workspaces), "LOG_LEVEL": "WARNING"}
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentry_tool_runner", env=env)
    try:
        await ready(port, worker)

        async def step() -> None:
            request = ToolRequested(
                scope=SCOPE,
                turn_id=f"turn-{uuid.uuid4().hex}",
                call_id=f"call-{uuid.uuid4().hex[:8]}",
                tool="calculator",
                arguments={"expression": "37*91"},
                deadline=time.time() + 30,
            )
            body = await bus.request(topology.tool_pool("default"), encode(request), timeout=10)
            reply = TOOL_REPLY.validate_json(body)
            assert isinstance(reply, ToolCompleted) and reply.output == "3367", reply

        return await measure(step)
    finally:
        worker.terminate()
        await worker.wait()
        await stand_in.stop()
        await bus.close()
        await delete(topology, settings.amqp_url.get_secret_value())


async def ready(port: int, worker: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            assert worker.returncode is None, "the worker died while starting"
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the worker never became ready")


async def delete(topology: Topology, url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in topology.durable_queues(REGISTRY.pools()):
            await channel.queue_delete(queue)
        for exchange in topology.exchanges():
            await channel.exchange_delete(exchange)


async def run() -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        print("bubblewrap is not installed (apt-get install bubblewrap): nothing to measure")
        return
    workspaces = Path(tempfile.mkdtemp(prefix="agentry-bench-"))
    os.chmod(workspaces, 0o711)  # the sandbox user must reach the users' folders below it
    resources = Resources(workspaces, SAMPLE_DOCS)
    plain, sandbox = PlainProcessExecutor(resources=resources), SandboxExecutor(bwrap, resources)
    sum_up = {"expression": "1+1"}
    try:
        rows = [
            ("bare subprocess `python3 -I -S -c` (same code)", await measure(bare)),
            ("calculator, plain child (no sandbox)", await measure(through(plain, "calculator", sum_up))),
            ("calculator, sandbox", await measure(through(sandbox, "calculator", sum_up))),
            ("`python` tool, sandbox (same code)", await measure(through(sandbox, "python", {"code": CODE}))),
            ("calculator over the broker (worker process, memory stand-in)", await broker_round_trip(workspaces)),
        ]
    finally:
        shutil.rmtree(workspaces, ignore_errors=True)
    print(f"{os.cpu_count()} CPUs, {RUNS} runs each after {WARM_UP} warm-up runs; milliseconds\n")
    print("| what | p50 | p95 | runs |\n|---|---|---|---|")
    for name, timings in rows:
        print(row(name, timings))
