"""Runs the tools whose backend is the worker: our own pure functions, called in-process.

A sandboxed child costs a turn ~30 ms of CPU (spawn, namespaces, a cold interpreter
importing the tool: docs/benchmarks.md), which a calculator does not need: it reads no
file, opens no socket, runs no code of the model's (`ast` walked over a whitelist, never
`eval`). `Tool.__post_init__` allows backend "worker" only to tools declared without any
such reach. The call keeps its deadline (`timeout_seconds`) and output cap; it runs in a
thread, so a slow one holds up no other call (a thread cannot be killed: these tools
bound their own work, as the calculator bounds exponents and digits). Every other tool
goes to the wrapped executor: the sandbox.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from pydantic import ValidationError

from agentry_tool_runner.execution.child import execute
from agentry_tool_runner.execution.executor import Executor
from agentry_tool_runner.execution.outcome import CHILD_CODES, describe_validation_error, failure
from agentry_tool_runner.metrics import TOOL_EXECUTIONS
from agentry_tool_runner.tools.tool import Tool


class InWorkerExecutor:
    """Tools with backend "worker" in a thread of this process; the rest to `inner`."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        if tool.backend != "worker":
            return await self._inner.run(tool, arguments, scope)
        started = time.monotonic()
        try:
            validated = tool.validate_arguments(arguments)
        except ValidationError as exc:
            return failure(tool.name, "invalid_arguments", describe_validation_error(exc))
        request = {
            "implementation": tool.implementation,
            "arguments": validated,
            "max_output_bytes": tool.limits.max_output_bytes,
        }
        TOOL_EXECUTIONS.labels(tool=tool.name).inc()
        try:
            reply = await asyncio.wait_for(asyncio.to_thread(execute, request), tool.timeout_seconds)
        except TimeoutError:
            return failure(tool.name, "timeout", f"the tool did not finish within {tool.timeout_seconds:g}s")
        elapsed = int((time.monotonic() - started) * 1000)
        if reply["ok"]:
            return ToolCompleted(call_id="", tool=tool.name, ok=True, output=reply["output"], duration_ms=elapsed)
        code = reply["error"]["code"]
        return failure(tool.name, code if code in CHILD_CODES else "failed", reply["error"]["message"], elapsed)
