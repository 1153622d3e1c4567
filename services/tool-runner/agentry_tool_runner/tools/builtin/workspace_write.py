"""Writes a text file into the calling user's workspace (creating folders on the way).

Runs in the sandbox with only that user's folder mounted, read-write, at /workspace.
`destructive`: it replaces what the file held, so it is never run twice when in doubt,
and the reasoner asks the user before it runs. The file is written next to its place
and renamed over it, so a call stopped midway leaves the old content, not half of it.
"""

from __future__ import annotations

import json
import os
import tempfile

from agentry_tool_runner.tools.builtin._paths import inside, relative_path, used_bytes
from agentry_tool_runner.tools.failure import ToolFailure, in_worker

MAX_CONTENT_CHARS = 256 * 1024
QUOTA_BYTES = 20 * 1024 * 1024  # per user


def run(path: str, content: str, workspace: str) -> str:
    full = inside(workspace, path)
    shown = relative_path(path)
    if shown == "." or os.path.isdir(full):
        raise ToolFailure(f"{shown} is a folder; name a file in it")
    data = content.encode()
    existed = os.path.lexists(full)
    previous = os.lstat(full).st_size if existed else 0
    if used_bytes(workspace) - previous + len(data) > QUOTA_BYTES:
        raise ToolFailure(f"the workspace would exceed its quota of {QUOTA_BYTES // (1024 * 1024)} MiB")
    folder = os.path.dirname(full)
    os.makedirs(folder, exist_ok=True)
    inside(workspace, os.path.relpath(folder, os.path.realpath(workspace)))  # no link on the way
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".write-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, full)
    except BaseException:
        os.unlink(temporary)
        raise
    return json.dumps({"path": shown, "bytes": len(data), "replaced": existed})


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: Annotated[str, AfterValidator(relative_path)] = Field(
            min_length=1, max_length=512, description="Path relative to the workspace, e.g. 'notes/todo.md'."
        )
        content: str = Field(max_length=MAX_CONTENT_CHARS, description="The whole new content of the file.")

    TOOL = Tool(
        name="workspace_write",
        description=(
            "Writes a text file in the user's workspace, replacing it if it exists and creating folders on the "
            "way. Paths are relative to the workspace, e.g. 'notes/todo.md'. Asks the user first."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="destructive",
        timeout_seconds=5.0,
        limits=Limits(cpu_seconds=2, memory_mib=256, max_output_bytes=4096, max_file_bytes=2 * 1024 * 1024),
        workspace="write",
    )
