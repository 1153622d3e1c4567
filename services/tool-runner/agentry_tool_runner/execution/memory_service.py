"""Runs the tools whose backend is the memory service: one RPC per call, in the worker.

Every other tool goes to the wrapped executor (the sandbox). The reply becomes the tool's
output as JSON, in the shape the model reads back.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

from agentry_shared.bus import Bus, RpcTimeout
from agentry_shared.contracts.facts import FACT_REPLY, FactRemembered, FactsRecalled, TaskList, TaskUpdated
from agentry_shared.contracts.memory import MemoryFailure
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted, ToolError
from pydantic import BaseModel

from agentry_tool_runner.execution.executor import Executor
from agentry_tool_runner.tools.tool import Tool

MEMORY_TIMEOUT_S = 10.0


def output_of(reply: BaseModel) -> str:
    if isinstance(reply, FactRemembered):
        return json.dumps({"remembered": reply.fact.fact, "category": reply.fact.category, "new": reply.created})
    if isinstance(reply, FactsRecalled):
        return json.dumps({"facts": [{"fact": f.fact, "category": f.category} for f in reply.facts]})
    if isinstance(reply, TaskUpdated):
        task = reply.task
        return json.dumps({"task": task.task, "status": task.status, "progress": task.progress, "new": reply.created})
    if isinstance(reply, TaskList):
        tasks = [{"task": t.task, "status": t.status, "progress": t.progress} for t in reply.tasks]
        return json.dumps({"tasks": tasks})
    raise TypeError(f"unexpected memory reply {type(reply).__name__}")


class MemoryServiceExecutor:
    """Memory tools as one RPC in the worker (they run no code of the model's); the rest to `inner`."""

    def __init__(self, bus: Bus, inner: Executor) -> None:
        self._bus = bus
        self._inner = inner

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        if tool.backend != "memory":
            return await self._inner.run(tool, arguments, scope)
        started = time.monotonic()

        def done(ok: bool, output: str = "", error: ToolError | None = None) -> ToolCompleted:
            elapsed = int((time.monotonic() - started) * 1000)
            return ToolCompleted(call_id="", tool=tool.name, ok=ok, output=output, error=error, duration_ms=elapsed)

        if scope is None:
            return done(False, error=ToolError(code="failed", message="a memory tool needs the caller's scope"))
        module, function = tool.implementation.split(":")
        build = getattr(importlib.import_module(module), function)
        request: BaseModel = build(scope, **tool.validate_arguments(arguments))
        try:
            body = await self._bus.request(
                self._bus.topology.memory_rpc, request.model_dump_json().encode(), timeout=MEMORY_TIMEOUT_S
            )
        except RpcTimeout:
            return done(False, error=ToolError(code="unavailable", message="the memory service did not answer"))
        reply = FACT_REPLY.validate_json(body)
        if isinstance(reply, MemoryFailure):
            return done(False, error=ToolError(code=reply.code, message=reply.message))
        return done(True, output_of(reply))
