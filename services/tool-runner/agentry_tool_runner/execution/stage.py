"""The files a tool's child imports, and nothing else of the worker's.

The worker copies them, byte-compiled, into a runtime folder (`Stage`, below) that the
sandbox binds read-only at `/opt/agentry` and the weak backend imports from:
our package's `child` and `failure` modules (with the `__init__`s on their way), the
built-in tools (`tools/builtin`: tool modules and their stdlib helpers), and the tool's
own module when it lives elsewhere (test-only tools, found through the executor's import
paths). The rest of the package (the registry and `Tool` included), the worker's venv
and its settings stay out of the child's sight.

Byte-compiled: every call's child is a fresh interpreter that cannot write a `.pyc`
(`-B`, a read-only bind), so without the worker's compiled copies it compiled our
modules from source on every call (~2.4 ms of a sandboxed call: docs/benchmarks.md).
"""

from __future__ import annotations

import atexit
import compileall
import functools
import importlib.machinery
import importlib.util
import os
import shutil
import tempfile
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


class Stage:
    """A copy of what the child imports, in a runtime folder any sandbox user can reach.

    The checkout may live where uid 65534 cannot walk (a 0700 home, root's home, a
    `mktemp -d` folder): bwrap, running as that uid, could not bind its files. So the
    worker copies them once at start (and a test-only tool's module on first use) into
    `/run/agentry-tool-runner/<pid>-<random>/` (or a 0755 folder of the system's temp dir when /run
    is not writable): owned by the worker, folders 0755, files 0644, whatever the umask.
    Removed at exit; folders of workers that died without cleaning up are removed by the
    next worker that starts. The copy also pins the code a running worker's sandboxes see.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staged: set[str] = set()

    @classmethod
    def create(cls) -> Stage:
        root = _runtime_folder()
        stage = cls(root)
        atexit.register(stage.close)
        return stage

    def code(self, implementation: str, import_paths: tuple[str, ...] = ()) -> Path:
        """The folder holding the child's package and `implementation`'s module."""
        for target, source in child_files(implementation, import_paths):
            if target not in self._staged:
                _copy(source, self.root / "lib" / target, compiled=True)
                self._staged.add(target)
        return self.root / "lib"

    def folder(self, name: str, source: Path) -> Path:
        """A copy of a read-only folder (e.g. the sample docs), made once."""
        if f"/{name}" not in self._staged:
            _copy(source, self.root / name)
            self._staged.add(f"/{name}")
        return self.root / name

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _runtime_folder() -> Path:
    runtime = Path("/run/agentry-tool-runner")
    try:
        runtime.mkdir(mode=0o755, exist_ok=True)
        runtime.chmod(0o755)
        for stale in runtime.iterdir():  # named <pid>-<random>
            pid = stale.name.partition("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=runtime))
    except OSError:  # not root: the system's temp dir (/tmp is 1777)
        root = Path(tempfile.mkdtemp(prefix="agentry-tool-runner-"))
    root.chmod(0o755)
    return root


def _copy(source: Path, destination: Path, *, compiled: bool = False) -> None:
    """`compiled`: with a `.pyc` beside each module, made from the copy (timestamp-checked:
    the child's Python uses it only if it is its version's and matches the copy). Quietly:
    a module that does not compile fails in the child, not on the worker's stdout (the log)."""
    _folders(destination.parent)
    if source.is_dir():
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        if compiled:
            compileall.compile_dir(destination, quiet=2, workers=1)
    else:
        shutil.copyfile(source, destination)
        if compiled:
            compileall.compile_file(destination, quiet=2)
    _open_up(destination)
    if compiled and destination.is_file():
        _open_up(destination.parent / "__pycache__")


def _folders(path: Path) -> None:
    """mkdir -p, each new folder 0755 (mkdir's mode goes through the umask)."""
    if path.is_dir():
        return
    _folders(path.parent)
    path.mkdir()
    path.chmod(0o755)


def _open_up(path: Path) -> None:
    """0755 folders, 0644 files: readable by the sandbox user whatever the umask."""
    if path.is_dir():
        path.chmod(0o755)
        for folder, folders, files in os.walk(path):
            for name in folders:
                os.chmod(os.path.join(folder, name), 0o755)  # noqa: S103 (code, readable by design)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
    else:
        path.chmod(0o644)
