"""The worker's connection to one MCP server: started, listed, watched, restarted.

One `ServerConnection` per configured server of a pool this worker serves. Its task
(`run`) connects (a sandboxed process for stdio, execution/mcp_sandbox.py; an HTTP
session for a URL), initialises, lists the tools, then watches: the process exiting, a
ping that goes unanswered, `notifications/tools/list_changed` (the list is fetched again).
When the connection ends it is made again after a back-off (1 s doubling to 30 s), for
ever: a server that is down or never starts costs its own tools only. While it is down
its tools are out of the catalog; a call that still names one is answered `unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import httpx2
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from agentry_tool_runner.tools.mcp.catalog import McpTool, to_tool
from agentry_tool_runner.tools.mcp.config import ServerConfig

log = logging.getLogger(__name__)

State = Literal["starting", "up", "down"]
# Makes the stdio transport of a server: the sandboxed process, bridged (mcp_sandbox.py).
StdioFactory = Callable[[str, ServerConfig], contextlib.AbstractAsyncContextManager[tuple[TransportStreams, Any]]]

_BACKOFF_START, _BACKOFF_MAX = 1.0, 30.0
_MAX_PAGES = 100  # of one listing, whatever the tools on them
CLIENT_INFO = mcp_types.Implementation(name="agentry-tool-runner", version="1")


class ServerDown(Exception):
    """The server is not connected; nothing was sent."""


class ServerLost(Exception):
    """The connection ended while a request was in flight: its fate is unknown."""


class ServerConnection:
    def __init__(self, name: str, prefix: str, config: ServerConfig, stdio: StdioFactory | None) -> None:
        self.name = name
        self.prefix = prefix
        self.config = config
        self._stdio = stdio
        self.state: State = "starting"
        self.why_down = "starting"
        self.tools: dict[str, McpTool] = {}  # by catalog name; kept while down (for `unavailable`)
        self.generation = 0
        self._session: ClientSession | None = None
        self._process: Any = None
        self._lost = asyncio.Event()
        self._list_changed = asyncio.Event()
        self.first_attempt = asyncio.Event()
        self._up = asyncio.Event()

    # ---- the connection's life ------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = _BACKOFF_START
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._connect_and_serve(stop)
            except Exception as exc:  # the server's failure, never the worker's
                self.why_down = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("MCP server unavailable", extra={"server": self.name, "why": self.why_down})
            finally:
                self._session, self._process, self.state = None, None, "down"
                self._up.clear()
                self.first_attempt.set()
            if time.monotonic() - started > _BACKOFF_MAX:
                backoff = _BACKOFF_START
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _connect_and_serve(self, stop: asyncio.Event) -> None:
        self._lost.clear()
        async with contextlib.AsyncExitStack() as stack:
            streams = await stack.enter_async_context(self._transport())
            session = ClientSession(*streams, message_handler=self._on_message, client_info=CLIENT_INFO)
            await stack.enter_async_context(session)
            async with asyncio.timeout(self.config.start_timeout_seconds):
                await session.initialize()
                await self._list(session)
            self._session, self.state, self.why_down = session, "up", ""
            self.generation += 1
            self._up.set()
            self.first_attempt.set()
            log.info("MCP server connected", extra={"server": self.name, "tools": ",".join(self.tools)})
            await self._watch(session, stop)

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[TransportStreams]:
        if self.config.transport == "http":
            assert self.config.url is not None
            async with (
                httpx2.AsyncClient(headers=self.config.headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http,
                streamable_http_client(self.config.url, http_client=http) as streams,
            ):
                yield streams
            return
        if self._stdio is None:
            raise ServerDown("stdio servers need the sandbox, which this worker does not have")
        async with self._stdio(self.name, self.config) as (streams, process):
            self._process = process
            yield streams

    async def _watch(self, session: ClientSession, stop: asyncio.Event) -> None:
        """Returns when the connection should be made again (or the worker stops)."""
        exited = asyncio.ensure_future(self._process.wait()) if self._process is not None else None
        try:
            while not stop.is_set() and not self._lost.is_set():
                waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._lost, self._list_changed)]
                if exited is not None:
                    waiters.append(exited)
                done, pending = await asyncio.wait(
                    waiters, timeout=self.config.ping_interval_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending:
                    if waiter is not exited:
                        waiter.cancel()
                if exited is not None and exited.done():
                    raise ServerLost(f"the server process exited ({self._process.returncode})")
                if self._list_changed.is_set():
                    self._list_changed.clear()
                    async with asyncio.timeout(self.config.start_timeout_seconds):
                        await self._list(session)
                    log.info("MCP tools changed", extra={"server": self.name, "tools": ",".join(self.tools)})
                elif not done and not await self.alive(session):
                    raise ServerLost("the server did not answer a ping")
            if self._lost.is_set():
                raise ServerLost(self.why_down or "the connection was given up")
        finally:
            if exited is not None:
                exited.cancel()

    async def alive(self, session: ClientSession | None = None) -> bool:
        session = session or self._session
        if session is None:
            return False
        try:
            async with asyncio.timeout(self.config.cancel_grace_seconds + 3.0):
                await session.send_ping()
        except Exception:
            return False
        return True

    def give_up(self, why: str) -> None:
        """Ends the connection now (a stdio server's process is killed); it is made again."""
        self.why_down = why
        self.state = "down"
        self._up.clear()
        self._lost.set()
        process = self._process
        if process is not None and process.returncode is None:
            from agentry_tool_runner.execution.process import kill_group

            kill_group(process.pid)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._list_changed.set()
        elif isinstance(message, Exception):
            log.warning("MCP transport error", extra={"server": self.name, "error": str(message)[:300]})

    async def _list(self, session: ClientSession) -> None:
        """Every page, up to `max_tools` tools offered or `_MAX_PAGES` pages: a server that
        lists without end (a cursor on every page) or lists thousands would otherwise grow
        the worker's memory until the start timeout, or the catalog of every turn."""
        limit = self.config.max_tools
        tools: dict[str, McpTool] = {}
        cursor: str | None = None
        full = False
        for _ in range(_MAX_PAGES):
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            for remote in page.tools:
                if full := len(tools) >= limit:
                    break
                tool = to_tool(self.name, self.config, self.prefix, remote)
                if tool is not None:
                    tools[tool.name] = tool
            cursor = page.next_cursor
            if not cursor or full:
                break
        if full or cursor:
            log.warning(
                "MCP server lists more tools than max_tools (or pages); the rest are left out",
                extra={"server": self.name, "offered": len(tools), "max_tools": limit, "max_pages": _MAX_PAGES},
            )
        self.tools = tools

    # ---- calls ----------------------------------------------------------------------

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Raises ServerDown (not sent), ServerLost (fate unknown), MCPError (the server refused)."""
        session = self._session
        if session is None or self.state != "up":
            raise ServerDown(self.why_down or "not connected")
        generation = self.generation
        try:
            result = await session.call_tool(tool.remote_name, arguments)
        except asyncio.CancelledError:
            # The SDK has sent notifications/cancelled; a server that does not stop is ended.
            asyncio.get_running_loop().create_task(self._check_stopped(session, generation))
            raise
        except Exception as exc:
            if await self._was_lost(generation):
                raise ServerLost(str(exc)) from exc
            raise
        if not isinstance(result, mcp_types.CallToolResult):
            raise ServerLost(f"unexpected result type {type(result).__name__}")
        return result

    async def _was_lost(self, generation: int) -> bool:
        """After a failed request: did the connection end (now, or within a moment)?"""
        for _ in range(10):
            if self._lost.is_set() or self.generation != generation or self.state != "up":
                return True
            if self._process is not None and self._process.returncode is not None:
                return True
            await asyncio.sleep(0.1)
        return False

    async def _check_stopped(self, session: ClientSession, generation: int) -> None:
        if generation != self.generation or await self.alive(session):
            return
        log.warning("MCP server did not stop after a cancel; ending it", extra={"server": self.name})
        self.give_up("did not answer after a cancelled call")

    async def wait_up(self, newer_than: int = -1) -> None:
        """Until the connection is up on a session newer than generation `newer_than` (the
        caller bounds the wait): right after a loss the old session may still look up."""
        while True:
            await self._up.wait()
            if self.generation > newer_than:
                return
            await asyncio.sleep(0.05)


Runner = Callable[[asyncio.Event], Awaitable[None]]
