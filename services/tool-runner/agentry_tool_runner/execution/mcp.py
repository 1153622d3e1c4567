"""MCP tools, run: the hub of this worker's server connections, and the executor for them.

A call of an MCP tool comes through the same claim / kept result / never-twice path as
any tool (calls/lifecycle.py); here it is checked against the server's schema, rate
limited per tool, sent over the server's connection under the tool's timeout, and its
result (MCP content) turned into the tool message the model gets:
  - text blocks as they are; `structuredContent` as JSON when there is no text; images,
    audio, links and embedded resources as a short description; cut at the tool's
    output cap, visibly;
  - `isError` results -> `failed` with the server's text;
  - the server down -> `unavailable`; a protocol error, or a result that is not a
    CallToolResult -> `failed`;
  - the server lost mid-call (its process died, its connection dropped): run once more
    on the new connection if the tool is `read_only` or `idempotent`, else `interrupted`;
  - the timeout, or a cancel: the SDK sends `notifications/cancelled`; a server that then
    does not answer a ping is ended (and restarted), see tools/mcp/client.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import jsonschema
import mcp_types
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from mcp.client._transport import TransportStreams
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from agentry_tool_runner.execution.executor import Executor
from agentry_tool_runner.execution.isolation import Isolation
from agentry_tool_runner.execution.mcp_sandbox import process_transport, python_matches, spawn_server
from agentry_tool_runner.execution.outcome import failure
from agentry_tool_runner.execution.sandbox import SandboxExecutor
from agentry_tool_runner.execution.seccomp import build_filter
from agentry_tool_runner.metrics import TOOL_EXECUTIONS
from agentry_tool_runner.tools.mcp.catalog import McpTool
from agentry_tool_runner.tools.mcp.client import ServerConnection, ServerDown, ServerLost, StdioFactory
from agentry_tool_runner.tools.mcp.config import McpConfig, ServerConfig
from agentry_tool_runner.tools.tool import Tool

log = logging.getLogger(__name__)

_FIRST_CONNECT_SECONDS = 15.0


class McpHub:
    """The connections of this worker (servers of the pools it serves) and their tools."""

    def __init__(self, config: McpConfig, stdio: StdioFactory | None) -> None:
        self.config = config
        self._stdio = stdio
        self.connections: dict[str, ServerConnection] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def start(self, pools: Iterable[str]) -> None:
        """Connects to the servers of `pools` in the background; waits (bounded) for the first
        attempts, so the first catalog has their tools; never fails for a server."""
        served = set(pools)
        for name, server in self.config.servers.items():
            if server.pool not in served:
                continue
            connection = ServerConnection(name, self.config.prefix(name), server, self._stdio)
            self.connections[name] = connection
            self._tasks.append(asyncio.create_task(connection.run(self._stop), name=f"mcp-{name}"))
        if self.connections:
            waits = [c.first_attempt.wait() for c in self.connections.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), _FIRST_CONNECT_SECONDS)
            for connection in self.connections.values():
                if connection.state != "up":
                    log.warning(
                        "MCP server not connected at start; its tools are out of the catalog",
                        extra={"server": connection.name, "why": connection.why_down},
                    )

    async def stop(self) -> None:
        self._stop.set()
        for connection in self.connections.values():
            connection.give_up("the worker is stopping")
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def tools(self) -> Iterable[McpTool]:
        for connection in self.connections.values():
            if connection.state == "up":
                yield from connection.tools.values()

    def known(self, name: str) -> McpTool | None:
        for connection in self.connections.values():
            if name in connection.tools:
                return connection.tools[name]
        return None


class RateLimits:
    """Calls per minute per tool on this worker (a sliding window)."""

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def take(self, tool: McpTool) -> float:
        """0 when the call may go (and it is counted), else the seconds until it may."""
        if tool.calls_per_minute <= 0:
            return 0.0
        now = time.monotonic()
        window = self._calls[tool.name]
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= tool.calls_per_minute:
            return max(0.001, 60.0 - (now - window[0]))
        window.append(now)
        return 0.0


class McpExecutor:
    """MCP tools over the hub's connections; every other tool to `inner`."""

    def __init__(self, hub: McpHub, inner: Executor) -> None:
        self.hub = hub
        self._inner = inner
        self._limits = RateLimits()

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        if not isinstance(tool, McpTool):
            return await self._inner.run(tool, arguments, scope)
        started = time.monotonic()
        completed = await self._run(tool, arguments)
        completed.duration_ms = int((time.monotonic() - started) * 1000)
        return completed

    async def _run(self, tool: McpTool, arguments: dict[str, Any]) -> ToolCompleted:
        try:
            tool.validate_arguments(arguments)
        except jsonschema.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path)) or "arguments"
            return failure(tool.name, "invalid_arguments", f"{where}: {exc.message}"[:500])
        wait = self._limits.take(tool)
        if wait > 0:
            message = f"more than {tool.calls_per_minute} calls a minute of this tool here; retry in {math.ceil(wait)}s"
            refused = failure(tool.name, "rate_limited", message)
            refused.retry_after_ms = math.ceil(wait * 1000)
            return refused
        connection = self.hub.connections.get(tool.server)
        if connection is None:
            return failure(tool.name, "unavailable", f"this worker is not connected to the MCP server {tool.server!r}")
        TOOL_EXECUTIONS.labels(tool=tool.name).inc()
        try:
            async with asyncio.timeout(tool.timeout_seconds):
                return await self._attempts(tool, connection, arguments)
        except TimeoutError:
            return failure(tool.name, "timeout", f"the MCP server did not answer within {tool.timeout_seconds:g}s")
        except ServerDown as down:
            return failure(tool.name, "unavailable", f"the MCP server {tool.server!r} is unavailable: {down}")
        except MCPError as exc:
            return failure(tool.name, "failed", f"the MCP server refused the call: {exc.message}")
        except ValidationError as exc:  # the SDK's check of the result: the server's fault, not ours
            log.warning("MCP server sent an invalid result", extra={"server": tool.server, "error": str(exc)[:300]})
            message = f"the MCP server {tool.server!r} answered with something that is not a tool result"
            return failure(tool.name, "failed", message)

    async def _attempts(self, tool: McpTool, connection: ServerConnection, arguments: dict[str, Any]) -> ToolCompleted:
        """Once; once more on the next connection when the server was lost and the tool may run twice."""
        generation = connection.generation
        try:
            return to_completed(tool, await connection.call(tool, arguments))
        except ServerLost as lost:
            log.warning("MCP server lost mid-call", extra={"server": tool.server, "why": str(lost)[:300]})
            if tool.side_effect == "destructive":
                message = "the MCP server stopped during the call; it may or may not have taken effect"
                return failure(tool.name, "interrupted", message)
        await connection.wait_up(newer_than=generation)
        try:
            return to_completed(tool, await connection.call(tool, arguments))
        except ServerLost:
            return failure(tool.name, "crashed", "the MCP server stopped during the call, and again when it was re-run")


def to_completed(tool: McpTool, result: mcp_types.CallToolResult) -> ToolCompleted:
    text = content_text(result)
    if result.is_error:
        return failure(tool.name, "failed", text or "the tool reported an error")
    return ToolCompleted(call_id="", tool=tool.name, ok=True, output=cut(text, tool.limits.max_output_bytes))


def content_text(result: mcp_types.CallToolResult) -> str:
    parts = [_block(block) for block in result.content]
    if result.structured_content is not None and not any(
        isinstance(block, mcp_types.TextContent) for block in result.content
    ):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(part for part in parts if part)


def _block(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        kind = "image" if isinstance(block, mcp_types.ImageContent) else "audio"
        return f"[{kind}: {block.mime_type}, about {len(block.data) * 3 // 4} bytes, not shown]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link: {block.uri} ({block.name})]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return resource.text
        return f"[resource: {resource.uri}, binary, not shown]"
    return f"[{getattr(block, 'type', 'content')}: not shown]"


def cut(text: str, cap: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:
        return text
    kept = data[: cap - 64].decode("utf-8", "ignore")
    return f"{kept}…[truncated {len(data) - len(kept.encode())} bytes]"


def stdio_factory(bwrap: str | None, seccomp: bytes | None) -> StdioFactory:
    """How this worker starts stdio servers: in bubblewrap, or weakly when allowed."""
    version_ok = python_matches()

    @contextlib.asynccontextmanager
    async def start(name: str, server: ServerConfig) -> AsyncIterator[tuple[TransportStreams, Any]]:
        if server.python_packages and not version_ok:
            raise ServerDown("python_packages: the system Python is not the worker's version")
        process = await spawn_server(server, bwrap, seccomp)
        async with process_transport(process, name) as streams:
            yield streams, process

    return start


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def stdio_for(isolation: Isolation | None) -> StdioFactory | None:
    """stdio servers in the sandbox the worker found; weakly only when the operator allows
    weak isolation; not at all without either (their tools are `unavailable`)."""
    if isolation is None:  # an executor was passed in (tests): try bubblewrap directly
        bwrap = find_bwrap()
        return stdio_factory(bwrap, build_filter()) if bwrap else None
    if isolation.sandboxed and isinstance(isolation.executor, SandboxExecutor):
        return stdio_factory(isolation.executor.bwrap, isolation.executor.seccomp)
    return stdio_factory(None, None) if isolation.weak else None
