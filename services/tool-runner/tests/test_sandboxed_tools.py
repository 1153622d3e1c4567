"""The sandboxed tools through the real worker (`python -m agentry_tool_runner`, the real
broker, bubblewrap): schemas, the http allowlist, workspaces, docs, the catalog, pools.
Memory is `MemoryStandIn` (conftest.py); the worker is shared with test_escape.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from agentry_shared.bus import Bus, RpcTimeout, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested, ToolCompleted, ToolRequested
from aiohttp import web

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import RealWorker, RealWorkerFactory

POOLS = {"python": "sandbox", "http_fetch": "network"}


async def ask(bus: Bus, tool: str, arguments: dict[str, Any], user: str = "u1", timeout: float = 30) -> ToolCompleted:
    request = ToolRequested(
        scope=Scope(tenant_id="t1", user_id=user, conversation_id="c1"),
        turn_id=f"turn-{uuid.uuid4().hex}",
        call_id=f"call-{uuid.uuid4().hex[:8]}",
        tool=tool,
        arguments=arguments,
        deadline=time.time() + 60,
    )
    target = bus.topology.tool_pool(POOLS.get(tool, "default"))
    reply = TOOL_REPLY.validate_json(await bus.request(target, encode(request), timeout=timeout))
    assert isinstance(reply, ToolCompleted)
    return reply


def code(reply: ToolCompleted) -> str | None:
    return reply.error.code if reply.error else None


async def test_the_catalog_lists_every_tool(sandbox_worker: RealWorker) -> None:
    bus = sandbox_worker.bus
    catalog = TOOL_REPLY.validate_json(
        await bus.request(bus.topology.tool_catalog, encode(CatalogRequested()), timeout=10)
    )
    assert isinstance(catalog, Catalog)
    tools = {tool.name: (tool.pool, tool.side_effect) for tool in catalog.tools}
    assert tools == {
        "calculator": ("default", "read_only"),
        "current_time": ("default", "read_only"),
        "python": ("sandbox", "idempotent"),
        "http_fetch": ("network", "read_only"),
        "search_docs": ("default", "read_only"),
        "workspace_read": ("default", "read_only"),
        "workspace_write": ("default", "destructive"),
        "remember": ("default", "idempotent"),
        "recall": ("default", "read_only"),
        "task_update": ("default", "idempotent"),
        "task_list": ("default", "read_only"),
    }


async def test_bad_arguments_never_start_a_process(sandbox_worker: RealWorker) -> None:
    before = await sandbox_worker.metric("agentry_tool_executions_total", tool="python")
    for arguments in ({}, {"code": ""}, {"code": "1", "timeout": 99}, {"code": "x" * 20_001}):
        reply = await ask(sandbox_worker.bus, "python", arguments)
        assert code(reply) == "invalid_arguments", arguments
    assert await sandbox_worker.metric("agentry_tool_executions_total", tool="python") == before


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A web server on 127.0.0.1 (on this worker's allowlist) with a redirect elsewhere."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="hello from 127.0.0.1", content_type="text/plain")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/page")

    app = web.Application()
    app.add_routes([web.get("/page", page), web.get("/away", away)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_http_fetch_reaches_allowlisted_hosts_only(sandbox_worker: RealWorker, site: str) -> None:
    fetched = await ask(sandbox_worker.bus, "http_fetch", {"url": f"http://{site}/page"})
    assert fetched.ok, fetched.error
    assert json.loads(fetched.output)["body"] == "hello from 127.0.0.1"
    port = site.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/page", f"http://{site}/away", "https://example.com/"):
        denied = await ask(sandbox_worker.bus, "http_fetch", {"url": url})
        assert code(denied) == "denied", url
        assert denied.error is not None and "allowlist" in denied.error.message


async def test_workspaces_are_per_user_and_closed(sandbox_worker: RealWorker) -> None:
    bus = sandbox_worker.bus
    written = await ask(bus, "workspace_write", {"path": "notes/plan.md", "content": "ship it"})
    assert written.ok and json.loads(written.output)["path"] == "notes/plan.md"
    read = await ask(bus, "workspace_read", {"path": "notes//plan.md"})
    assert read.ok and json.loads(read.output)["content"] == "ship it"
    seen = await ask(bus, "python", {"code": "print(open('notes/plan.md').read()); open('x', 'w')"})
    result = json.loads(seen.output)
    assert result["stdout"] == "ship it\n" and "Read-only file system" in result["stderr"]

    # Another user sees none of it, not even through python.
    other = await ask(bus, "workspace_read", {"path": "notes/plan.md"}, user="u2")
    assert code(other) == "failed" and other.error is not None and "no such file" in other.error.message
    listing = await ask(bus, "python", {"code": "import os; print(os.listdir('/workspace'))"}, user="u2")
    assert json.loads(listing.output)["stdout"] == "[]\n"

    for path in ("../u2/x", "/etc/passwd", "notes/../../x"):
        refused = await ask(bus, "workspace_read", {"path": path})
        assert code(refused) == "invalid_arguments", path
    folder = sandbox_worker.workspace / "t1" / "u1"
    os.symlink("/etc", folder / "etc")  # planted outside any tool: links are never followed
    os.symlink(sandbox_worker.workspace / "t1" / "u2", folder / "neighbour")
    for path in ("etc/passwd", "neighbour"):
        linked = await ask(bus, "workspace_read", {"path": path})
        assert code(linked) == "denied", path
    wrote_through = await ask(bus, "workspace_write", {"path": "neighbour/planted.txt", "content": "x"})
    assert code(wrote_through) == "denied"
    assert not (sandbox_worker.workspace / "t1" / "u2" / "planted.txt").exists()


async def test_search_docs_finds_the_sample_docs(sandbox_worker: RealWorker) -> None:
    reply = await ask(sandbox_worker.bus, "search_docs", {"query": "which built-in tools are there?"})
    assert reply.ok, reply.error
    results = json.loads(reply.output)["results"]
    assert results and results[0]["path"] == "tools.md"


async def test_a_worker_serves_only_its_pools_and_bounds_its_children(start_real_worker: RealWorkerFactory) -> None:
    async with start_real_worker(TOOL_RUNNER_POOLS="sandbox,network", TOOL_RUNNER_CONCURRENCY="2") as worker:
        with pytest.raises(RpcTimeout):  # the default pool has no worker: nobody answers
            await ask(worker.bus, "calculator", {"expression": "1+1"}, timeout=1.5)
        peak = 0.0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, await worker.metric("agentry_tool_calls_in_flight"))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        calls = [ask(worker.bus, "python", {"code": "import time; time.sleep(0.6)"}) for _ in range(4)]
        calls += [ask(worker.bus, "http_fetch", {"url": "http://localhost/"}) for _ in range(2)]
        replies = await asyncio.gather(*calls)
        watcher.cancel()
        assert [reply.ok for reply in replies[:4]] == [True] * 4
        assert [code(reply) for reply in replies[4:]] == ["denied"] * 2
        assert peak <= 2
        assert time.monotonic() - started >= 1.2  # four 0.6 s calls, two at a time
