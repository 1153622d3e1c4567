"""A refused MCP servers file never repeats a secret: `${NAME}` is resolved before the
file is checked, and the refusal is logged as the tool-runner's crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentry_tool_runner.tools.mcp.config import ConfigError, load

TOKEN = "ghp_SUPERSECRETTOKEN1234567890"


@pytest.mark.parametrize(
    "server",
    [
        {"url": "ftp://api.example/mcp", "headers": {"Authorization": "Bearer ${GH_TOKEN}"}},
        {"command": "python", "url": "https://api.example/mcp", "env": {"GH_TOKEN": "${GH_TOKEN}"}},
        {"command": "python", "env": {"GH_TOKEN": "${GH_TOKEN}"}, "unknown_key": 1},
    ],
)
def test_a_refused_file_does_not_quote_resolved_secrets(tmp_path: Path, server: dict[str, Any]) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"gh": server}}))
    with pytest.raises(ConfigError) as info:
        load(path, {"GH_TOKEN": TOKEN})
    message = str(info.value)
    assert "TOOL_RUNNER_MCP_CONFIG" in message and "gh" in message  # still says what is wrong
    assert TOKEN[-10:] not in message and TOKEN[:8] not in message
