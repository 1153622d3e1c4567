"""Reads a file (or lists a folder) of the calling user's workspace.

Runs in the sandbox with only that user's folder mounted, read-only, at /workspace: a
path cannot reach another user's files because they are not there. The path rules
(`_paths.py`) are checked by the worker and again here, against symbolic links.
"""

from __future__ import annotations

import json
import os
import stat

from agentry_tool_runner.tools.builtin._paths import inside, relative_path
from agentry_tool_runner.tools.builtin._text import clip
from agentry_tool_runner.tools.failure import ToolFailure, in_worker

READ_CAP = 48 * 1024
MAX_ENTRIES = 200


def run(path: str, workspace: str) -> str:
    full = inside(workspace, path)
    shown = relative_path(path)
    try:
        info = os.lstat(full)
    except FileNotFoundError:
        raise ToolFailure(f"no such file in the workspace: {shown}") from None
    if stat.S_ISDIR(info.st_mode):
        names = sorted(os.listdir(full))
        entries = [_entry(full, name) for name in names[:MAX_ENTRIES]]
        return json.dumps({"path": shown, "entries": entries, "more": max(0, len(names) - MAX_ENTRIES)})
    if not stat.S_ISREG(info.st_mode):
        raise ToolFailure(f"{shown} is not a regular file")
    descriptor = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(READ_CAP)
    return json.dumps({"path": shown, "size": info.st_size, "content": clip(data, READ_CAP, info.st_size)})


def _entry(folder: str, name: str) -> dict[str, object]:
    info = os.lstat(os.path.join(folder, name))
    kind = "folder" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode) else "other"
    return {"name": name, "type": kind, "size": info.st_size}


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        path: Annotated[str, AfterValidator(relative_path)] = Field(
            max_length=512, description="Path relative to the workspace, e.g. 'notes/todo.md'; '.' lists the top."
        )

    TOOL = Tool(
        name="workspace_read",
        description=(
            "Reads a text file from the user's workspace (the first 48 KiB), or lists a folder's entries. "
            "Paths are relative to the workspace, e.g. 'notes/todo.md'; '.' lists the top folder."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="read_only",
        timeout_seconds=5.0,
        limits=Limits(cpu_seconds=2, memory_mib=256, max_output_bytes=READ_CAP * 6 + 1024),
        workspace="read",
    )
