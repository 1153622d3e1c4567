"""Pure built-ins run in the worker (execution/in_worker.py); everything else still goes on."""

from __future__ import annotations

from typing import Any

import pytest
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from agentry_tool_runner.execution.in_worker import InWorkerExecutor
from agentry_tool_runner.tools.registry import REGISTRY, Tool
from pydantic import BaseModel, ConfigDict


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Inner:
    """Stands for the sandbox: records what it was given."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        self.ran.append(tool.name)
        return ToolCompleted(call_id="", tool=tool.name, ok=True, output="from the sandbox")


def _tool(name: str) -> Tool:
    tool = REGISTRY.get(name)
    assert tool is not None
    return tool


@pytest.mark.parametrize("name", ["calculator", "current_time"])
def test_the_pure_built_ins_run_in_the_worker(name: str) -> None:
    assert _tool(name).backend == "worker"


@pytest.mark.parametrize("name", ["python", "http_fetch", "workspace_read", "workspace_write", "search_docs"])
def test_tools_with_reach_or_code_keep_the_sandbox(name: str) -> None:
    assert _tool(name).backend == "child"


@pytest.mark.parametrize(
    "reach", [{"requires_sandbox": True}, {"network": "allowlist"}, {"workspace": "read"}, {"docs": True}]
)
def test_a_tool_with_any_reach_cannot_run_in_the_worker(reach: dict[str, Any]) -> None:
    declared: dict[str, Any] = {"requires_sandbox": False, **reach}
    with pytest.raises(ValueError, match="worker"):
        Tool(name="t", description="d", params=_Params, implementation="m:f", backend="worker", **declared)


async def test_calculator_answers_without_a_child() -> None:
    inner = _Inner()
    executor = InWorkerExecutor(inner)
    result = await executor.run(_tool("calculator"), {"expression": "37*91"})
    assert (result.ok, result.output) == (True, "3367")
    assert inner.ran == []


async def test_tool_failures_and_bad_arguments_are_reported_as_in_the_sandbox() -> None:
    executor = InWorkerExecutor(_Inner())
    refused = await executor.run(_tool("calculator"), {"expression": "2 ** 100000"})
    assert not refused.ok and refused.error is not None and refused.error.code == "failed"
    invalid = await executor.run(_tool("calculator"), {"expr": "1"})
    assert invalid.error is not None and invalid.error.code == "invalid_arguments"


async def test_other_tools_go_to_the_inner_executor() -> None:
    inner = _Inner()
    result = await InWorkerExecutor(inner).run(_tool("python"), {"code": "print(1)"})
    assert result.output == "from the sandbox" and inner.ran == ["python"]


@pytest.mark.parametrize("zone", ["Europe", "America/Argentina", "Etc"])
async def test_a_folder_of_the_zone_database_is_an_unknown_time_zone(zone: str) -> None:
    """ZoneInfo opens a folder of the database as a file: its IsADirectoryError named the
    worker's own path (its venv) to the model, as `failed`, not as a bad time zone."""
    result = await InWorkerExecutor(_Inner()).run(_tool("current_time"), {"timezone": zone})
    assert result.error is not None and result.error.code == "failed"
    assert result.error.message == f"unknown time zone {zone!r}; use an IANA name like 'Europe/Paris'"
