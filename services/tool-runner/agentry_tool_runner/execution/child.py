"""The process one tool call runs in: the unit the sandbox (bubblewrap) wraps.

Protocol: one JSON request on stdin
    {"tool": str, "implementation": "module:function", "arguments": {...},
     "context": {...}, "max_output_bytes": int, "import_paths": [str, ...],
     "max_processes": int (optional: RLIMIT_NPROC to set before anything runs)}
and one JSON result on the original stdout
    {"ok": true, "output": str} | {"ok": false, "error": {"code": str, "message": str}}.
`context` holds what the worker grants the call beyond the model's arguments (the
workspace's path, the docs folder, the allowed hosts); it is passed as keyword arguments.

Only the standard library and the tool's own module are imported: inside the sandbox this
runs on the system's `python3 -S -I`, without the worker's packages. The parent treats
everything here as untrusted: it caps, times and re-checks whatever comes back.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from agentry_tool_runner.tools import failure
from agentry_tool_runner.tools.failure import ToolFailure

TYPE_CHECKING = False  # not typing's: importing typing costs every call ~3 ms of start-up
if TYPE_CHECKING:
    from typing import Any

    from agentry_shared.contracts.errors import ToolErrorCode  # the sandbox has no agentry_shared

_MAX_MESSAGE_CHARS = 1000


def _error(code: ToolErrorCode, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message[:_MAX_MESSAGE_CHARS]}}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ToolFailure):
        return str(exc) or "the tool failed"
    if isinstance(exc, MemoryError):
        return "out of memory"
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def execute(request: dict[str, Any]) -> dict[str, Any]:
    sys.path[:0] = [str(path) for path in request.get("import_paths", [])]
    implementation = str(request["implementation"])
    module_name, _, function_name = implementation.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        return _error("crashed", f"could not load {implementation}: {_describe(exc)}")
    try:
        output = function(**request["arguments"], **request.get("context", {}))
    except ToolFailure as exc:
        return _error(exc.code, _describe(exc))
    except Exception as exc:
        return _error("failed", _describe(exc))
    if not isinstance(output, str):
        output = json.dumps(output, default=str)
    limit = int(request["max_output_bytes"])
    size = len(output.encode("utf-8", "replace"))
    if size > limit:
        return _error("output_too_large", f"the tool produced {size} bytes of output (limit {limit})")
    return {"ok": True, "output": output}


def _limit_processes(limit: int) -> None:
    """RLIMIT_NPROC from inside the sandbox's user namespace, where the kernel counts the
    processes of this call only (the count outside would be every call's)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def main() -> int:
    failure.enter_child()  # tool modules skip their (pydantic) declarations from here on
    # Whatever the tool prints goes to stderr: stdout carries our one result only.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        request = json.loads(sys.stdin.buffer.read())
        if "max_processes" in request:
            _limit_processes(int(request["max_processes"]))
        result = execute(request)
    except (ValueError, KeyError, TypeError) as exc:
        result = _error("crashed", f"bad request to the child: {_describe(exc)}")
    with os.fdopen(result_fd, "wb") as out:
        out.write(json.dumps(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
