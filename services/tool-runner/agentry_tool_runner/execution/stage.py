"""The files a tool's child imports, and nothing else of the worker's.

The sandbox binds them read-only under `/opt/agentry` (the weak backend copies them):
our package's `child` and `failure` modules (with the `__init__`s on their way), the
built-in tools (`tools/builtin`: tool modules and their stdlib helpers), and the tool's
own module when it lives elsewhere (test-only tools, found through the executor's import
paths). The rest of the package (the registry and `Tool` included), the worker's venv
and its settings stay out of the child's sight.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import agentry_tool_runner

PACKAGE_DIR = Path(agentry_tool_runner.__file__).resolve().parent
_PACKAGE = PACKAGE_DIR.name
# Relative to the package; the child imports these, and nothing else of ours but a tool.
_ALWAYS = (
    "__init__.py",
    "execution/__init__.py",
    "execution/child.py",
    "tools/__init__.py",
    "tools/failure.py",
)
_BUILTIN = "tools/builtin"
_BUILTIN_MODULE = f"{_PACKAGE}.{_BUILTIN.replace('/', '.')}"
# Starts the child from the staged files; the sandbox's Python has no other path to them.
BOOT = (
    "import sys; sys.path.insert(0, {root!r}); from agentry_tool_runner.execution.child import main; sys.exit(main())"
)


@functools.cache
def child_files(implementation: str, import_paths: tuple[str, ...] = ()) -> tuple[tuple[str, Path], ...]:
    """(relative destination, source file or directory) pairs, for `implementation`."""
    files = [(f"{_PACKAGE}/{name}", PACKAGE_DIR / name) for name in _ALWAYS]
    files.append((f"{_PACKAGE}/{_BUILTIN}", PACKAGE_DIR / _BUILTIN))
    module = implementation.partition(":")[0]
    if not module.startswith(f"{_BUILTIN_MODULE}."):
        if "." in module:
            raise ValueError(f"{implementation}: outside {_BUILTIN_MODULE}, only top-level modules can be staged")
        files.append((f"{module}.py", _module_file(module, import_paths)))
    return tuple(files)


def _module_file(module: str, import_paths: Sequence[str]) -> Path:
    spec = importlib.machinery.PathFinder.find_spec(module, list(import_paths)) or importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"module {module!r} not found as a .py file")
    return Path(spec.origin).resolve()
