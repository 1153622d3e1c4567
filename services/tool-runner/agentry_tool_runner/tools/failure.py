"""What a tool's code may import from us: the exceptions the model reads, and `in_worker`.

Free of imports on purpose: the child process loads this module before any tool, inside
the sandbox, where only the standard library and a few bound files of ours exist.
Anything else a tool raises is reported with its type name, as a likely bug.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the child imports as little as it can
if TYPE_CHECKING:
    from agentry_shared.contracts.errors import ToolErrorCode  # the sandbox has no agentry_shared

_in_child = False


class ToolFailure(Exception):
    """A clean, user-facing reason the call failed (bad input, domain error, ...)."""

    code: ToolErrorCode = "failed"


class ToolDenied(ToolFailure):
    """The tool's policy forbids it: a host not on the allowlist, a path out of the workspace."""

    code: ToolErrorCode = "denied"


def in_worker() -> bool:
    """True in the worker, False in a tool's child process.

    A tool module declares its parameters with pydantic (the worker validates with them)
    and runs in a child that has no pydantic: the sandbox's Python sees the standard
    library only. So the declaration sits under `if in_worker():`, which the child skips.
    """
    return not _in_child


def enter_child() -> None:
    """Called once by child.py before it imports any tool."""
    global _in_child
    _in_child = True
