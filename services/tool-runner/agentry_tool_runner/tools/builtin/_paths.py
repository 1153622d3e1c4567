"""The rules for a path in the user's workspace. Standard library only: the worker checks
them before a call (as `invalid_arguments`), the sandbox again where the files are."""

from __future__ import annotations

import os

from agentry_tool_runner.tools.failure import ToolDenied

MAX_PATH_CHARS = 512
MAX_DEPTH = 16


def relative_path(path: str) -> str:
    """`path` normalised ("a//b/./c" -> "a/b/c"; "" or "." -> "."); ValueError for an
    absolute path, a "..", a NUL or a backslash, anything too long or too deep."""
    if "\x00" in path or "\\" in path:
        raise ValueError("the path may not contain NUL or backslash characters")
    if path.startswith("/"):
        raise ValueError("the path must be relative to the workspace, e.g. 'notes/todo.md'")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("the path may not contain '..'")
    if len(parts) > MAX_DEPTH or any(len(part) > 255 for part in parts) or len(path) > MAX_PATH_CHARS:
        raise ValueError("the path is too long or too deep")
    return "/".join(parts) or "."


def inside(workspace: str, path: str) -> str:
    """The absolute path of `path` in `workspace`; ToolDenied if any part of it is a
    symbolic link (which could lead out of the folder) or it resolves outside."""
    try:
        relative = relative_path(path)
    except ValueError as exc:
        raise ToolDenied(str(exc)) from None
    root = os.path.realpath(workspace)
    full = os.path.normpath(os.path.join(root, relative))
    if os.path.realpath(full) != full or os.path.commonpath([root, full]) != root:
        raise ToolDenied(f"{relative!r} leads out of the workspace (a symbolic link)")
    return full


def used_bytes(root: str, limit_entries: int = 10_000) -> int:
    """Bytes the workspace holds (regular files), counting at most `limit_entries` entries."""
    total = entries = 0
    for folder, directories, files in os.walk(root):
        for name in files:
            entries += 1
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += stat.st_size
        entries += len(directories)
        if entries > limit_entries:
            raise ToolDenied("the workspace holds too many files")
    return total
