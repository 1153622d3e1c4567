"""One module per tool: a stdlib-only `run` function, and under `if in_worker():` its
`Params` model and the `TOOL` that describes both.

`run` executes in the call's child, inside the sandbox, on the system's `python3 -S -I`:
the standard library, `agentry_tool_runner.tools.failure` and the modules of this package
are all it can import. The declaration needs pydantic, which only the worker has. Helpers
shared by tools live here too, named with a leading underscore.
"""
