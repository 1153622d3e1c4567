"""Broker fixtures: the real RabbitMQ, a namespace of its own per test, deleted afterwards.

The memory service is not part of these tests: `MemoryStandIn` (agentry_shared.testing)
stands in for it and answers ClaimToolCall and CompleteToolCall from a dict (the real memory service
implements the same contract). Tests seed it with claims (a `running` claim of a dead
runner, a `done` one) and read back what the tool-runner kept.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted, ToolRequested
from agentry_shared.settings import ToolRunnerSettings
from agentry_shared.testing import MemoryStandIn
from agentry_shared.topology import Topology
from agentry_tool_runner.main import service

HERE = Path(__file__).parent
AMQP_URL = ToolRunnerSettings().amqp_url.get_secret_value()

_spec = importlib.util.spec_from_file_location("agentry_tool_runner_probe_worker", HERE / "probe_worker.py")
assert _spec is not None and _spec.loader is not None
probe_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_worker)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(port: int, still_starting: Callable[[], bool]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            assert still_starting(), "the tool-runner died while starting"
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the tool-runner never became ready")


def runner_settings(topology: Topology, port: int, **more: Any) -> ToolRunnerSettings:
    return ToolRunnerSettings(
        agentry_namespace=topology.namespace,
        agentry_partitions=topology.partitions,
        tool_runner_port=port,
        shutdown_grace_seconds=5,
        **more,
    )


async def delete_namespace(topology: Topology, pools: tuple[str, ...] = ("default", "network", "sandbox")) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for queue in topology.durable_queues(list(pools)):
            await channel.queue_delete(queue)
        for exchange in topology.exchanges():
            await channel.exchange_delete(exchange)


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    """A namespace of this test's own; its queues and exchanges are deleted afterwards."""
    namespace = Topology(f"t{uuid.uuid4().hex}", 2)
    try:
        yield namespace
    finally:
        await delete_namespace(namespace)


@pytest.fixture
async def bus(topology: Topology) -> AsyncIterator[Bus]:
    """The test's own connection (the caller's side); declares the exchanges."""
    connection = Bus(AMQP_URL, topology, name="tool-runner-test")
    await connection.connect()
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def memory(bus: Bus) -> AsyncIterator[MemoryStandIn]:
    stand_in = MemoryStandIn(bus)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


RunnerFactory = Callable[..., AbstractAsyncContextManager[None]]


@pytest.fixture
def start_runner(topology: Topology) -> RunnerFactory:
    """An in-process tool-runner with the probe tools, for the length of an `async with`."""

    @asynccontextmanager
    async def running(amqp_url: str = AMQP_URL) -> AsyncIterator[None]:
        port = free_port()
        settings = runner_settings(topology, port, amqp_url=amqp_url)
        stop = asyncio.Event()
        task = asyncio.create_task(
            service(stop, settings, probe_worker.PROBES, probe_worker.executor(), probe_worker.TIMING)
        )
        try:
            await wait_ready(port, lambda: not task.done())
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    return running


@pytest.fixture
async def client(bus: Bus, memory: MemoryStandIn, start_runner: RunnerFactory) -> AsyncIterator[Bus]:
    """A running tool-runner (probe tools included) and the caller's bus to talk to it."""
    async with start_runner():
        yield bus


WorkerFactory = Callable[[Path], AbstractAsyncContextManager[asyncio.subprocess.Process]]


@pytest.fixture
def start_worker_process(topology: Topology) -> WorkerFactory:
    """probe_worker.py as a process of its own (logs to the given file), killed afterwards."""

    @asynccontextmanager
    async def running(log_file: Path) -> AsyncIterator[asyncio.subprocess.Process]:
        port = free_port()
        env = {
            **os.environ,
            "AGENTRY_NAMESPACE": topology.namespace,
            "AGENTRY_PARTITIONS": str(topology.partitions),
            "TOOL_RUNNER_PORT": str(port),
        }
        with log_file.open("wb") as log:
            worker = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "probe_worker.py"), env=env, stdout=log, stderr=log
            )
        try:
            await wait_ready(port, lambda: worker.returncode is None)
            yield worker
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

    return running


# ---- the real worker, sandbox and all -------------------------------------------------

SECRET = "s3cret"  # in the real worker's environment; no tool output may ever show it
SANDBOX_UID = 65534


@dataclass
class RealWorker:
    """`python -m agentry_tool_runner` as a process of its own, with the caller's bus and the
    memory stand-in it claims calls from."""

    bus: Bus
    memory: MemoryStandIn
    process: asyncio.subprocess.Process
    port: int
    workspace: Path
    log: Path

    async def ask(
        self, tool: str, arguments: dict[str, Any], turn_id: str | None = None, *, timeout: float = 40.0
    ) -> ToolCompleted:
        """One call of `tool` through the default pool, as a reasoner sends it."""
        request = ToolRequested(
            scope=Scope(tenant_id="t1", user_id="u1", conversation_id="c1"),
            turn_id=turn_id or f"turn-{uuid.uuid4().hex}",
            call_id=f"call-{uuid.uuid4().hex[:8]}",
            tool=tool,
            arguments=arguments,
            deadline=time.time() + 60,
        )
        body = await self.bus.request(self.bus.topology.tool_pool("default"), encode(request), timeout=timeout)
        reply = TOOL_REPLY.validate_json(body)
        assert isinstance(reply, ToolCompleted)
        return reply

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the worker's /metrics (0 when absent)."""
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


@asynccontextmanager
async def real_worker(folder: Path, launcher: Sequence[str] = (), **environment: str) -> AsyncIterator[RealWorker]:
    """The real entry point in a namespace of its own, with `AGENTRY_TEST_SECRET` set;
    `launcher` is a command that execs the worker (e.g. into a cgroup of its own)."""
    topology = Topology(f"t{uuid.uuid4().hex}", 2)
    bus = Bus(AMQP_URL, topology, name="tool-runner-test")
    await bus.connect()
    memory = MemoryStandIn(bus)
    await memory.start()
    port, log = free_port(), folder / "worker.log"
    # Not under pytest's 0700 temporary folder: the sandbox user must be able to reach it.
    workspaces = Path(tempfile.mkdtemp(prefix="agentry-test-workspaces-"))
    workspaces.chmod(0o711)
    env = {
        **os.environ,
        "AGENTRY_NAMESPACE": topology.namespace,
        "AGENTRY_PARTITIONS": str(topology.partitions),
        "TOOL_RUNNER_PORT": str(port),
        "TOOL_RUNNER_WORKSPACE_DIR": str(workspaces),
        "TOOL_RUNNER_HTTP_ALLOWLIST": "127.0.0.1",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "AGENTRY_TEST_SECRET": SECRET,
        **environment,
    }
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *launcher, sys.executable, "-m", "agentry_tool_runner", env=env, stdout=sink, stderr=sink
        )
    try:
        await wait_ready(port, lambda: process.returncode is None)
        yield RealWorker(bus, memory, process, port, workspaces, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        await memory.stop()
        await bus.close()
        await delete_namespace(topology)
        shutil.rmtree(workspaces, ignore_errors=True)


@pytest.fixture(scope="session")
async def sandbox_worker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RealWorker]:
    """One real worker for the escape suite and the sandboxed tools' tests."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    async with real_worker(tmp_path_factory.mktemp("sandbox-worker")) as worker:
        yield worker


def call_processes(marker: str, below: int) -> list[str]:
    """Live processes of a call: those whose command line carries `marker` (the code and
    whatever it forked) and those of the sandbox uid descending from pid `below`."""
    parents: dict[int, int] = {}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            uid = entry.stat().st_uid
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        parents[int(entry.name)] = int(ppid)
        if state == "Z":
            continue  # a zombie runs nothing
        if marker.encode() in cmdline or (uid == SANDBOX_UID and _descends(int(entry.name), below, parents)):
            found.append(f"{entry.name}: {cmdline[:120]!r}")
    return found


def _descends(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    for _ in range(64):
        ppid = parents.get(pid) or _ppid(pid)
        if ppid in (0, None):
            return False
        if ppid == ancestor:
            return True
        pid = ppid
    return False


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0


class CallProcesses:
    """What the tests ask of /proc about a call's processes (see `call_processes`)."""

    @staticmethod
    def alive(marker: str, below: int) -> list[str]:
        return call_processes(marker, below)

    @staticmethod
    async def started(marker: str, below: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not call_processes(marker, below):
            assert time.monotonic() < deadline, "the call's code never started"
            await asyncio.sleep(0.05)

    @staticmethod
    async def survivors(marker: str, below: int, within: float = 2.0) -> list[str]:
        """The call's processes still alive after up to `within` seconds (kills are asynchronous)."""
        deadline = time.monotonic() + within
        while True:
            found = call_processes(marker, below)
            if not found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


@pytest.fixture
def processes() -> CallProcesses:
    return CallProcesses()


RealWorkerFactory = Callable[..., AbstractAsyncContextManager[RealWorker]]


@pytest.fixture
def start_real_worker(tmp_path: Path) -> RealWorkerFactory:
    """`real_worker` in the test's own folder, for a test that needs a worker to itself."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")

    def start(launcher: Sequence[str] = (), **environment: str) -> AbstractAsyncContextManager[RealWorker]:
        return real_worker(tmp_path, launcher, **environment)

    return start
