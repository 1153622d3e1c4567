"""Runs a tool call and turns whatever happened into a `ToolCompleted`.

`Executor` is the seam for sandboxing: a bubblewrap backend subclasses
`SubprocessExecutor` and overrides `command()` to wrap the same child (namespaces,
unprivileged uid, seccomp, `--unshare-net` unless `tool.network`); validation, limits,
timeouts, caps and the mapping of outcomes stay here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Protocol

from agentry_shared.contracts.tools import ToolCompleted, ToolError
from pydantic import ValidationError

from agentry_tool_runner.metrics import TOOL_EXECUTIONS
from agentry_tool_runner.process import ChildRun, run_child
from agentry_tool_runner.tool import Tool

log = logging.getLogger(__name__)

CHILD_CODES = {"failed", "output_too_large", "crashed"}
_MAX_MESSAGE_CHARS = 1000
# JSON escaping can turn one byte of output into six ("\u0000"); the rest is the envelope.
_JSON_EXPANSION, _ENVELOPE_BYTES = 6, 8 * 1024


class Executor(Protocol):
    async def run(self, tool: Tool, arguments: dict[str, Any]) -> ToolCompleted:
        """Never raises for anything the tool or its arguments do; call_id is left empty."""
        ...


def failure(tool: str, code: str, message: str, duration_ms: int = 0) -> ToolCompleted:
    clean = message.encode("utf-8", "replace").decode()[:_MAX_MESSAGE_CHARS]
    return ToolCompleted(
        call_id="", tool=tool, ok=False, error=ToolError(code=code, message=clean), duration_ms=duration_ms
    )


def describe_validation_error(exc: ValidationError, limit: int = 500) -> str:
    """One line per problem, without pydantic's URLs and input echoes (short, for the model)."""
    parts = [f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts)[:limit]


class SubprocessExecutor:
    """Each call in a fresh `python -I -m agentry_tool_runner.child` under rlimits."""

    def __init__(self, python: str = sys.executable, import_paths: Sequence[str] = ()) -> None:
        self.python = python
        # Extra sys.path entries for the child; tests use it for test-only tools.
        self.import_paths = list(import_paths)

    def command(self, tool: Tool) -> list[str]:
        # -I: no PYTHON* variables, no user site, no cwd on sys.path; -B: no .pyc writes.
        return [self.python, "-I", "-B", "-m", "agentry_tool_runner.child"]

    async def run(self, tool: Tool, arguments: dict[str, Any]) -> ToolCompleted:
        started = time.monotonic()
        try:
            validated = tool.validate_arguments(arguments)
        except ValidationError as exc:
            return failure(tool.name, "invalid_arguments", describe_validation_error(exc))
        request = {
            "tool": tool.name,
            "implementation": tool.implementation,
            "arguments": validated,
            "max_output_bytes": tool.limits.max_output_bytes,
            "import_paths": self.import_paths,
        }
        workdir = tempfile.mkdtemp(prefix=f"agentry-{tool.name}-")
        try:
            TOOL_EXECUTIONS.labels(tool=tool.name).inc()
            child = await run_child(
                self.command(tool),
                json.dumps(request).encode(),
                cwd=workdir,
                limits=tool.limits,
                timeout=tool.timeout_seconds,
                stdout_cap=tool.limits.max_output_bytes * _JSON_EXPANSION + _ENVELOPE_BYTES,
            )
        except OSError as exc:  # fork/exec failed: out of processes, memory, ...
            log.error("could not start the tool process", extra={"tool": tool.name, "error": str(exc)})
            return failure(tool.name, "crashed", "the tool process could not be started")
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        result = interpret(tool, child)
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result


def interpret(tool: Tool, child: ChildRun) -> ToolCompleted:
    """Believe the child only for what it cannot lie about to our harm."""
    if child.timed_out:
        return failure(tool.name, "timeout", f"the tool did not finish within {tool.timeout_seconds:g}s")
    if child.overflow is not None:
        cap = tool.limits.max_output_bytes if child.overflow == "stdout" else tool.limits.max_stderr_bytes
        return failure(tool.name, "output_too_large", f"the tool wrote more than {cap} bytes to {child.overflow}")
    if child.stderr:
        log.info("tool stderr", extra={"tool": tool.name, "stderr": child.stderr[-2000:].decode(errors="replace")})
    if child.returncode is not None and child.returncode < 0:
        return failure(tool.name, "crashed", _killed_by(tool, -child.returncode))
    try:
        reply = json.loads(child.stdout)
        ok = reply["ok"]
    except (ValueError, KeyError, TypeError):
        log.warning("tool child gave no result", extra={"tool": tool.name, "returncode": child.returncode})
        return failure(tool.name, "crashed", f"the tool process exited ({child.returncode}) without a result")
    if ok is True and isinstance(reply.get("output"), str):
        output = reply["output"].encode("utf-8", "replace")
        if len(output) > tool.limits.max_output_bytes:
            return failure(tool.name, "output_too_large", f"more than {tool.limits.max_output_bytes} bytes of output")
        return ToolCompleted(call_id="", tool=tool.name, ok=True, output=output.decode())
    error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    code = str(error["code"]) if error.get("code") in CHILD_CODES else "failed"
    return failure(tool.name, code, str(error.get("message") or "the tool failed"))


def _killed_by(tool: Tool, number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    hint = {
        int(signal.SIGXCPU): f" (it used more than {tool.limits.cpu_seconds}s of CPU)",
        int(signal.SIGXFSZ): f" (it wrote a file over {tool.limits.max_file_bytes} bytes)",
    }.get(number, "")
    return f"the tool process was killed by {name}{hint}"
