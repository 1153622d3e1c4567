"""A tool-runner with test-only tools: imported by conftest.py, or run as a process of its
own (`python probe_worker.py`, settings from the environment) for the kill -9 test.

Not a test module (no `test_` prefix); the tools' code is in probe_tools.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentry_shared.contracts.tools import SideEffect
from agentry_shared.lifecycle import run_service
from agentry_shared.settings import ToolRunnerSettings
from agentry_tool_runner.calls.claims import ClaimTiming
from agentry_tool_runner.execution.executor import PlainProcessExecutor
from agentry_tool_runner.main import service
from agentry_tool_runner.tools.registry import REGISTRY, Registry, Tool
from pydantic import BaseModel, ConfigDict

HERE = Path(__file__).parent
# Memory is a stand-in that answers at once: a short timeout keeps "unavailable" tests quick.
TIMING = ClaimTiming(memory_timeout=1.0, complete_budget=10.0)


class RecordParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    seconds: float = 0.0


def record_tool(side_effect: SideEffect) -> Tool:
    return Tool(
        name=f"probe_record_{side_effect}",
        description="test only: appends its pid to a file, then sleeps",
        params=RecordParams,
        implementation="probe_tools:record",
        side_effect=side_effect,
        timeout_seconds=30.0,
    )


PROBES = Registry(
    [
        *REGISTRY,
        record_tool("read_only"),
        record_tool("idempotent"),
        record_tool("destructive"),
    ]
)


def executor() -> PlainProcessExecutor:
    return PlainProcessExecutor(import_paths=[str(HERE)])


def main() -> None:
    settings = ToolRunnerSettings()

    async def run(stop: asyncio.Event) -> None:
        await service(stop, settings, PROBES, executor(), TIMING)

    run_service("tool-runner", run, settings.log_level, uvloop=False)


if __name__ == "__main__":
    main()
