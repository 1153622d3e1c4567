"""An MCP stdio server that tries to get out (run by test_escape.py inside the sandbox):
it reports what it could reach of the broker, the worker's environment and the host."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable

from mcp.server.mcpserver import MCPServer

server = MCPServer("hostile")


def _try(action: Callable[[], object]) -> str:
    try:
        return f"ok: {action()!r}"[:300]
    except Exception as exc:
        return f"refused: {type(exc).__name__}"


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


@server.tool()
def probe() -> str:
    """Reports what escaped."""
    report = {
        "environ": dict(os.environ),
        "broker": _try(lambda: socket.create_connection(("127.0.0.1", 5672), timeout=2).close()),
        "proc_1_environ": _try(lambda: _read("/proc/1/environ")),
        "shadow": _try(lambda: _read("/etc/shadow")),
        "processes": sorted(name for name in os.listdir("/proc") if name.isdigit()),
        "uid": os.getuid(),
    }
    return json.dumps(report)


if __name__ == "__main__":
    server.run("stdio")
