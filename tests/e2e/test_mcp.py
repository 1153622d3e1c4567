"""An MCP server's tool end to end: `mcp-server-time` (PyPI) over stdio in the tool-runner's
sandbox, offered in the catalog with its schema, called by the offline model for "what time
is it in Tokyo", approved by the user (destructive: its annotations are not trusted here),
and its answer streamed back; bad arguments are refused by the reasoner before dispatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentry_reasoner.guardrails import argument_errors
from agentry_shared.bus import Bus
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested
from agentry_shared.topology import Topology
from websockets.asyncio.client import connect

from tests.client import answer, approve, next_frame, send, until_turn_ends
from tests.stack import AMQP_URL, Stack

pytestmark = pytest.mark.e2e

TIME = {"command": "python", "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"], "python_packages": True}


@pytest.fixture(scope="module")
def mcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = Path(tmp_path_factory.mktemp("mcpstack"))
    config = folder / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"time": TIME}}))
    folder.chmod(0o755)
    config.chmod(0o644)
    stack = Stack(folder, TOOL_RUNNER_MCP_CONFIG=str(config))
    try:
        stack.start_all()
        yield stack
    finally:
        stack.close()


async def test_the_time_in_tokyo_comes_from_the_mcp_server(mcp_stack: Stack) -> None:
    bus = Bus(AMQP_URL, Topology(mcp_stack.namespace, 2), name="mcp-e2e")
    await bus.connect()
    try:
        asked = CatalogRequested().model_dump_json().encode()
        reply = TOOL_REPLY.validate_json(await bus.request(bus.topology.tool_catalog, asked, timeout=10))
    finally:
        await bus.close()
    assert isinstance(reply, Catalog)
    tool = {t.name: t for t in reply.tools}["time__get_current_time"]
    assert tool.side_effect == "destructive" and tool.parameters["required"] == ["timezone"]
    assert argument_errors(tool, {"timezone": 9}) is not None  # refused before dispatch
    assert argument_errors(tool, {"timezone": "Asia/Tokyo"}) is None

    async with connect(mcp_stack.ws_url + "?user=traveller") as ws:
        await send(ws, {"type": "message", "text": "What time is it in Tokyo?"})
        while (frame := await next_frame(ws))["type"] != "tool.approval_required":
            assert frame["type"] not in ("turn.completed", "turn.failed"), frame
        assert frame["tool"] == "time__get_current_time"
        assert frame["arguments"] == {"timezone": "Asia/Tokyo"}
        await approve(ws, frame, True)
        rest = await until_turn_ends(ws)
    assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [True], rest[-1]
    assert rest[-1]["type"] == "turn.completed"
    assert "Asia/Tokyo" in answer(rest) or "+09:00" in answer(rest), answer(rest)
