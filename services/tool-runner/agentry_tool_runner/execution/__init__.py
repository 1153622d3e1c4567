"""Running a tool's code: the child process, its sandbox and limits, and what came back.

Kept empty on purpose: the sandbox stages this package for `child`, whose Python has
the standard library only.
"""
