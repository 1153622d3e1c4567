"""Running a tool's code: the child process, its sandbox and limits, and what came back."""
# Nothing else here: the sandbox stages this file for `child`, on a Python with the standard library only.
