"""Every tool this runner knows. Adding a tool: one module in `builtin/`, one line below.

The registry (not the reasoner) is the source of truth: the catalog RPC serves the
descriptors built here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from agentry_shared.contracts.tools import ToolDescriptor

from agentry_tool_runner.tools.builtin import (
    calculator,
    current_time,
    http_fetch,
    memory,
    python,
    search_docs,
    workspace_read,
    workspace_write,
)
from agentry_tool_runner.tools.tool import Limits, Tool

__all__ = ["REGISTRY", "Limits", "Registry", "Tool"]


class Registry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools named {tool.name!r}")
            self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def pools(self) -> list[str]:
        return sorted({tool.pool for tool in self})

    def descriptors(self, memory: Callable[[Tool], str] | None = None) -> list[ToolDescriptor]:
        """The catalog; `memory` words each tool's memory cap as this worker enforces it."""
        return [tool.descriptor(memory(tool) if memory else None) for tool in self]


REGISTRY = Registry(
    [
        calculator.TOOL,
        current_time.TOOL,
        python.TOOL,
        http_fetch.TOOL,
        search_docs.TOOL,
        workspace_read.TOOL,
        workspace_write.TOOL,
        *memory.TOOLS,
    ]
)
