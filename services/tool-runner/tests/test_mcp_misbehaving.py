"""MCP servers that break the protocol's promises, through the real worker and the real
sandbox: `misbehaving_mcp_server.py` (standard library only, JSON-RPC by hand) as a stdio
server. What one server does costs its own tools at most, never the worker or the
catalog every user's turn is built from."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentry_shared.bus import encode
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested, ToolCompleted

if TYPE_CHECKING:
    from conftest import RealWorker, RealWorkerFactory

SERVER = Path(__file__).with_name("misbehaving_mcp_server.py")


@asynccontextmanager
async def misbehaving(
    start: RealWorkerFactory, environment: dict[str, str] | None = None, **more: Any
) -> AsyncIterator[RealWorker]:
    """A worker whose one MCP server (prefix `bad`) is the misbehaving one, with `environment`
    and `more` of its configuration."""
    # Not under pytest's 0700 temporary folder: the sandbox user must reach the server's file.
    folder = Path(tempfile.mkdtemp(prefix="agentry-misbehaving-mcp-"))
    try:
        folder.chmod(0o755)
        shutil.copy(SERVER, folder / SERVER.name)
        (folder / SERVER.name).chmod(0o644)
        server = {
            "command": "python",
            "args": [f"/opt/misbehaving/{SERVER.name}"],
            "mounts": [{"source": str(folder), "target": "/opt/misbehaving"}],
            "env": environment or {},
            "side_effect": "read_only",
            "start_timeout_seconds": 10,
            **more,
        }
        config = folder / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"bad": server}}))
        config.chmod(0o644)
        async with start(TOOL_RUNNER_MCP_CONFIG=str(config)) as worker:
            yield worker
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def ask(worker: RealWorker, tool: str, arguments: dict[str, Any], turn_id: str | None = None) -> ToolCompleted:
    return await worker.ask(tool, arguments, turn_id)


async def server_tools(worker: RealWorker) -> list[str]:
    body = await worker.bus.request(worker.bus.topology.tool_catalog, encode(CatalogRequested()), timeout=10)
    catalog = TOOL_REPLY.validate_json(body)
    assert isinstance(catalog, Catalog)
    return [tool.name for tool in catalog.tools if tool.name.startswith("bad__")]


async def test_a_result_that_is_no_tool_result_is_the_servers_failure(start_real_worker: RealWorkerFactory) -> None:
    """The SDK refuses it (a pydantic ValidationError); that used to escape the MCP
    executor and read `crashed`, "the tool runner failed to run the tool", logged as an
    error of the runner's with its traceback."""
    async with misbehaving(start_real_worker) as worker:
        reply = await ask(worker, "bad__not-a-result", {})
        assert reply.error is not None and reply.error.code == "failed", reply
        assert reply.error.message == "the MCP server 'bad' answered with something that is not a tool result"
        assert "tool executor failed" not in worker.log.read_text()
        assert (await ask(worker, "bad__tool-0-0", {})).output == "called tool-0-0"


async def test_a_listing_without_end_offers_the_first_max_tools(start_real_worker: RealWorkerFactory) -> None:
    """A next cursor on every page: the worker gathered pages until the start timeout, its
    memory growing all along (and again at every reconnect), and the server never came up;
    now it stops at the server's `max_tools` (64) and offers those."""
    async with misbehaving(start_real_worker, {"LIST_WITHOUT_END": "1", "PAGE_SIZE": "10"}) as worker:
        offered = await server_tools(worker)
        assert len(offered) == 64 and offered[:3] == ["bad__not-a-result", "bad__padded-1", "bad__tool-0-0"]
        assert (await ask(worker, offered[-1], {})).output == f"called {offered[-1].removeprefix('bad__')}"
        assert "lists more tools than max_tools" in worker.log.read_text()


async def test_a_tool_whose_schema_is_too_large_is_left_out(start_real_worker: RealWorkerFactory) -> None:
    """A schema goes into every model request of every user's turn: 32 KiB of it at most."""
    async with misbehaving(start_real_worker, {"SCHEMA_PADDING": str(40 * 1024)}) as worker:
        offered = await server_tools(worker)
        assert "bad__padded-1" not in offered and "bad__tool-0-0" in offered


async def test_the_servers_calls_per_minute_say_when_to_retry(start_real_worker: RealWorkerFactory) -> None:
    """`rate_limited` is the one refusal that waiting lifts, and the client's `tool.finished`
    says when (docs/protocol.md); this limit said "more than 1 calls a minute here", no more."""
    async with misbehaving(start_real_worker, calls_per_minute=1) as worker:
        assert (await ask(worker, "bad__tool-0-0", {})).ok
        refused = await ask(worker, "bad__tool-0-0", {})
        assert refused.error is not None and refused.error.code == "rate_limited", refused
        assert refused.retry_after_ms is not None and 1 <= refused.retry_after_ms <= 60_000
        assert refused.error.message.endswith(f"retry in {-(-refused.retry_after_ms // 1000)}s")
        assert (await ask(worker, "bad__tool-0-1", {})).ok  # per tool: the others still go
