"""One module per tool: a `Params` model, a `run` function, and a `TOOL` describing both.

Modules here are imported by the child process of every call, so they import only what
their `run` needs.
"""
