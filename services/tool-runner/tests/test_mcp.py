"""Tools of real MCP servers through the real worker: `mcp-server-time` (PyPI) in the
sandbox over stdio, `server-everything` (npm) over streamable HTTP on loopback and over
stdio in the sandbox, and a server that never starts. Needs `make mcp-everything`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agentry_shared.bus import encode
from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested, ToolCompleted

if TYPE_CHECKING:
    from conftest import RealWorker, RealWorkerFactory

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / ".cache" / "npm" / "node_modules"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
# server-everything listens on every interface; this makes its listen() take 127.0.0.1.
LOOPBACK = """import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def everything_http(folder: Path) -> AsyncIterator[str]:
    """server-everything in its streamable-HTTP mode on 127.0.0.1; yields its URL."""
    port = free_port()
    loopback = folder / "loopback.mjs"
    loopback.write_text(LOOPBACK)
    log = (folder / "everything.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        "node", "--import", str(loopback), str(EVERYTHING), "streamableHttp",
        env={"PATH": "/usr/bin:/bin", "PORT": str(port)}, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        await process.wait()
        log.close()


def everything_stdio(**more: Any) -> dict[str, Any]:
    """server-everything over stdio inside the sandbox (node from /usr, its files mounted)."""
    return {
        "command": "node",
        "args": ["/opt/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"],
        "mounts": [{"source": str(NODE_MODULES), "target": "/opt/node_modules"}],
        "memory_mib": 16384,  # V8 reserves address space far beyond what it uses
        "ping_interval_seconds": 1,
        **more,
    }


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    path.chmod(0o644)
    return path


TIME_SERVER = {
    "command": "python",
    "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
    "python_packages": True,
    "trust_annotations": True,
}

pytestmark = pytest.mark.skipif(not EVERYTHING.exists(), reason="run `make mcp-everything` first")


@pytest.fixture
async def worker(start_real_worker: RealWorkerFactory, tmp_path: Path) -> AsyncIterator[RealWorker]:
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"agentry-mcp-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    async with everything_http(folder) as url:
        config = write_config(
            folder / "mcp.json",
            {
                "time": TIME_SERVER,
                "everything": {"url": url, "tools": {"echo": {"side_effect": "read_only"}}},
                "evs": everything_stdio(),
                "evi": everything_stdio(tools={"trigger-long-running-operation": {"side_effect": "idempotent"}}),
                "broken": {"command": "/usr/bin/false"},
            },
        )
        async with start_real_worker(TOOL_RUNNER_MCP_CONFIG=str(config)) as real:
            yield real


async def ask(worker: RealWorker, tool: str, arguments: dict[str, Any], turn_id: str | None = None) -> ToolCompleted:
    return await worker.ask(tool, arguments, turn_id)


async def catalog(worker: RealWorker) -> Catalog:
    body = await worker.bus.request(worker.bus.topology.tool_catalog, encode(CatalogRequested()), timeout=10)
    reply = TOOL_REPLY.validate_json(body)
    assert isinstance(reply, Catalog)
    return reply


def server_pids(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and "bwrap" not in cmdline and "prlimit" not in cmdline:
                pids.append(int(entry))
    return pids


async def test_catalog_calls_errors_and_a_dead_server(worker: RealWorker) -> None:
    tools = {tool.name: tool for tool in (await catalog(worker)).tools}
    time_tool = tools["time__get_current_time"]
    assert time_tool.side_effect == "read_only"  # readOnlyHint, trusted for this server
    assert time_tool.parameters["required"] == ["timezone"]
    assert tools["everything__echo"].side_effect == "read_only"
    assert tools["everything__get-sum"].side_effect == "destructive"  # the default: not trusted
    assert "calculator" in tools and not [name for name in tools if name.startswith("broken__")]

    reply = await ask(worker, "time__get_current_time", {"timezone": "Asia/Tokyo"})
    assert reply.ok and '"timezone": "Asia/Tokyo"' in reply.output, reply
    bad = await ask(worker, "time__get_current_time", {"zone": "Asia/Tokyo"})
    assert bad.error is not None and bad.error.code == "invalid_arguments"
    assert (await ask(worker, "everything__echo", {"message": "hi"})).output == "Echo: hi"
    assert "is 5" in (await ask(worker, "everything__get-sum", {"a": 2, "b": 3})).output
    failed = await ask(worker, "everything__gzip-file-as-resource", {"data": "ftp://example.org/x"})
    assert failed.error is not None and failed.error.code == "failed" and "Unsupported URL" in failed.error.message
    image = await ask(worker, "everything__get-tiny-image", {})
    assert image.ok and "[image: image/png" in image.output
    # The server that never starts costs only its own tools.
    assert (await ask(worker, "calculator", {"expression": "6*7"})).output == "42"


async def test_a_cancel_reaches_a_long_running_call(worker: RealWorker) -> None:
    turn_id = f"turn-{uuid.uuid4().hex}"
    pending = asyncio.create_task(
        ask(worker, "everything__trigger-long-running-operation", {"duration": 20, "steps": 20}, turn_id)
    )
    for _ in range(500):  # until the call runs: a cancel before would only refuse it, never reach it
        if await worker.metric("agentry_tool_calls_in_flight"):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the call never started")
    started = time.monotonic()
    cancel = CancelRequested(conversation_id="c1", turn_id=turn_id)
    await worker.bus.publish(worker.bus.topology.control_exchange, "", encode(cancel), persistent=False)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.error is not None and reply.error.code == "cancelled"
    assert time.monotonic() - started < 1.0
    assert (await ask(worker, "everything__echo", {"message": "still here"})).ok


@pytest.mark.parametrize(("prefix", "expected"), [("evs", "interrupted"), ("evi", None)])
async def test_a_server_killed_mid_call(worker: RealWorker, prefix: str, expected: str | None) -> None:
    """Destructive (the default): `interrupted`, never re-run. Idempotent: run again on the
    restarted server."""
    before = set(server_pids("server-everything/dist/index.js stdio"))
    pending = asyncio.create_task(ask(worker, f"{prefix}__trigger-long-running-operation", {"duration": 3, "steps": 3}))
    for _ in range(500):  # until the worker runs the call (under load, its start takes a while)
        if await worker.metric("agentry_tool_calls_in_flight"):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # the request on its way through the server's stdin: mid-call from here
    busy = [pid for pid in server_pids("server-everything/dist/index.js stdio")]
    assert busy, "no stdio server process found"
    for pid in busy:  # both servers: the one with the call in flight among them
        os.kill(pid, signal.SIGKILL)
    reply = await asyncio.wait_for(pending, 30)
    if expected is None:
        assert reply.ok and "completed" in reply.output, reply
    else:
        assert reply.error is not None and reply.error.code == expected, reply
    assert before  # the servers were running before the kill
