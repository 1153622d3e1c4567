"""Turning what a child did into a `ToolCompleted`, believing it only where it cannot lie
to our harm: the kernel's word (exit signal, timeout, pipe sizes) beats the child's."""

from __future__ import annotations

import json
import logging
import signal
from typing import Final

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.tools import ToolCompleted, ToolError
from pydantic import ValidationError

from agentry_tool_runner.execution.process import ChildRun
from agentry_tool_runner.tools.tool import Tool

log = logging.getLogger(__name__)

# The error codes a child may report; anything else it says becomes "failed".
CHILD_CODES: Final[frozenset[ToolErrorCode]] = frozenset({"failed", "denied", "output_too_large", "crashed"})
# The child's word is an untrusted str: it becomes a code only by this lookup.
_CHILD_CODE_BY_NAME: Final[dict[str, ToolErrorCode]] = {code: code for code in CHILD_CODES}
_MAX_MESSAGE_CHARS = 1000


def failure(tool: str, code: ToolErrorCode, message: str, duration_ms: int = 0) -> ToolCompleted:
    clean = message.encode("utf-8", "replace").decode()[:_MAX_MESSAGE_CHARS]
    return ToolCompleted(
        call_id="", tool=tool, ok=False, error=ToolError(code=code, message=clean), duration_ms=duration_ms
    )


def describe_validation_error(exc: ValidationError, limit: int = 500) -> str:
    """One line per problem, without pydantic's URLs and input echoes (short, for the model)."""
    parts = [f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts)[:limit]


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
    code = _CHILD_CODE_BY_NAME.get(str(error.get("code")), "failed")
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
