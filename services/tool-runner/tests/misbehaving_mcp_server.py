"""An MCP stdio server that breaks the protocol's promises on purpose (run by
test_mcp_misbehaving.py inside the sandbox, on the bare system Python: standard library
only). It speaks newline-delimited JSON-RPC by hand, so it can send what no SDK would:

- `tools/list` pages without end (a next cursor on every page) when LIST_WITHOUT_END=1,
  each page of PAGE_SIZE tools, each tool's schema padded with SCHEMA_PADDING characters
  for the tools named `padded-*`;
- `tools/call` of `not-a-result` answers `{"content": "..."}`, which is no CallToolResult;
  any other tool answers its own name.
"""

from __future__ import annotations

import json
import os
import sys

PAGE_SIZE = int(os.environ.get("PAGE_SIZE", "4"))
LIST_WITHOUT_END = os.environ.get("LIST_WITHOUT_END") == "1"
SCHEMA_PADDING = int(os.environ.get("SCHEMA_PADDING", "0"))


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def tool(name: str) -> dict[str, object]:
    properties: dict[str, object] = {"x": {"type": "string"}}
    if name.startswith("padded-"):
        properties["padding"] = {"type": "string", "description": "p" * SCHEMA_PADDING}
    return {
        "name": name,
        "description": f"the tool {name}",
        "inputSchema": {"type": "object", "properties": properties},
    }


def page(cursor: str | None) -> dict[str, object]:
    number = int(cursor) if cursor else 0
    names = ["not-a-result", "padded-1"] if number == 0 else []
    names += [f"tool-{number}-{index}" for index in range(PAGE_SIZE)]
    result: dict[str, object] = {"tools": [tool(name) for name in names]}
    if LIST_WITHOUT_END:
        result["nextCursor"] = str(number + 1)
    return result


def answer(method: str, params: dict[str, object]) -> dict[str, object]:
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "misbehaving", "version": "1"},
        }
    if method == "tools/list":
        cursor = params.get("cursor")
        return page(cursor if isinstance(cursor, str) else None)
    if method == "tools/call":
        if params.get("name") == "not-a-result":
            return {"content": "a string where a list of content blocks belongs"}
        return {"content": [{"type": "text", "text": f"called {params.get('name')}"}]}
    return {}  # ping


for line in sys.stdin:
    request = json.loads(line)
    if "id" in request and "method" in request:
        send({"jsonrpc": "2.0", "id": request["id"], "result": answer(request["method"], request.get("params") or {})})
