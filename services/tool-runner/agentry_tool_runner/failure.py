"""The exception a tool raises for an error the model should read as-is.

Its own module, free of imports, because the child process loads it before any tool:
anything else a tool raises is reported with its type name, as a likely bug.
"""


class ToolFailure(Exception):
    """A clean, user-facing reason the call failed (bad input, domain error, ...)."""
