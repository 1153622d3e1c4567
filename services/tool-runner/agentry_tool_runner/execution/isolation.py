"""Which backend runs the tools, decided once at start-up by trying the sandbox.

- bubblewrap works: every tool runs in the sandbox (sandbox.py).
- it does not, and TOOL_RUNNER_ALLOW_WEAK_ISOLATION is set: every tool runs in the weak
  backend: the system Python as the sandbox uid, rlimits and a process group, no
  namespaces (the code can read what "nobody" can read and reach the network).
- it does not, and the flag is not set: tools that need the sandbox are answered
  `sandbox_unavailable`; pure functions of their arguments (`requires_sandbox=False`,
  e.g. calculator) still run in the weak backend.
Either way a start-up log line and two gauges say which it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from agentry_shared.settings import ToolRunnerSettings

from agentry_tool_runner.execution.executor import Executor, Launch, PlainProcessExecutor
from agentry_tool_runner.execution.outcome import failure
from agentry_tool_runner.execution.resources import Refused, Resources, reachable
from agentry_tool_runner.execution.sandbox import SANDBOX_PYTHON, SandboxExecutor, sandbox_identity
from agentry_tool_runner.execution.stage import BOOT, child_files
from agentry_tool_runner.metrics import SANDBOX_AVAILABLE, WEAK_ISOLATION
from agentry_tool_runner.tools.builtin import current_time
from agentry_tool_runner.tools.tool import Tool

log = logging.getLogger(__name__)

_PROBE_SECONDS = 10.0


class WeakIsolationExecutor(PlainProcessExecutor):
    """The child on the system Python (`-S -I`), as the sandbox uid when the worker is root,
    on copies of the files it imports, in a scratch directory it owns."""

    def __init__(self, resources: Resources, import_paths: tuple[str, ...] = (), python: str = SANDBOX_PYTHON):
        super().__init__(python, import_paths, resources)
        self.identity = sandbox_identity()

    def launch(self, tool: Tool, scope: Scope | None) -> Launch:
        who = self.identity
        context = self.grants(tool, scope, who.uid if who else None)
        for name in ("workspace", "docs"):
            if name in context and who and not reachable(Path(context[name]), who.uid, who.gid):
                raise Refused("failed", f"the {name} folder is not reachable by the sandbox user on this worker")
        workdir = tempfile.mkdtemp(prefix=f"agentry-{tool.name}-")
        lib = os.path.join(workdir, "lib")  # the worker's (read-only to the child)
        try:
            for target, source in child_files(tool.implementation, tuple(self.import_paths)):
                destination = os.path.join(lib, target)
                if source.is_dir():
                    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    os.makedirs(os.path.dirname(destination), exist_ok=True)
                    shutil.copy(source, destination)
            if who is not None:
                os.chown(workdir, who.uid, who.gid)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        argv = [self.python, "-S", "-I", "-B", "-c", BOOT.format(root=lib)]
        # No user namespace: RLIMIT_NPROC counts every process of the uid, all calls at once.
        return Launch(argv, workdir, context, identity=who, nproc="spawn" if who else "none", scratch=[workdir])


class PureOnlyExecutor:
    """Refuses the tools that need the sandbox; runs the pure ones with `fallback`."""

    def __init__(self, fallback: Executor) -> None:
        self.fallback = fallback

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        if tool.requires_sandbox:
            return failure(
                tool.name,
                "sandbox_unavailable",
                "this tool runs only in the sandbox, and the sandbox (bubblewrap) is not available on this worker",
            )
        return await self.fallback.run(tool, arguments, scope)


@dataclass(frozen=True)
class Isolation:
    executor: Executor
    sandboxed: bool  # bubblewrap works: every tool runs in it
    weak: bool  # tools that need the sandbox run without it


async def probe(executor: SandboxExecutor) -> str | None:
    """None when a sandboxed child runs and answers; else why it does not."""
    if not os.path.exists(executor.python):  # noqa: ASYNC240 (once, at start-up)
        return f"{executor.python} not found (the sandbox runs the system Python)"
    tool = current_time.TOOL
    try:
        run = await executor.spawn(tool, {}, executor.launch(tool, None), timeout=_PROBE_SECONDS)
    except Refused as refused:  # e.g. the package's files are out of the sandbox user's reach
        return refused.message
    except OSError as exc:
        return f"bwrap could not be started: {exc}"
    if run.returncode == 0 and run.stdout.startswith(b'{"ok": true'):
        return None
    detail = run.stderr.decode(errors="replace").strip() or f"exit status {run.returncode}"
    return ("timed out: " if run.timed_out else "") + detail[:500]


async def choose(settings: ToolRunnerSettings, import_paths: tuple[str, ...] = ()) -> Isolation:
    resources = Resources.from_settings(settings)
    bwrap = shutil.which("bwrap")
    why = "bwrap not found on PATH (apt-get install bubblewrap)"
    if bwrap is not None:
        sandbox = SandboxExecutor(bwrap, resources, import_paths)
        why_not = await probe(sandbox)
        if why_not is None:
            _report(sandboxed=True, weak=False)
            log.info("sandbox: bubblewrap works; every tool runs in it", extra={"bwrap": bwrap})
            return Isolation(sandbox, sandboxed=True, weak=False)
        why = why_not
    weak = WeakIsolationExecutor(resources, import_paths)
    allowed = settings.tool_runner_allow_weak_isolation
    _report(sandboxed=False, weak=allowed)
    if allowed:
        log.warning("sandbox unavailable; WEAK ISOLATION: tools run without namespaces", extra={"why": why})
        return Isolation(weak, sandboxed=False, weak=True)
    log.error("sandbox unavailable; tools that need it are refused (sandbox_unavailable)", extra={"why": why})
    return Isolation(PureOnlyExecutor(weak), sandboxed=False, weak=False)


def _report(*, sandboxed: bool, weak: bool) -> None:
    SANDBOX_AVAILABLE.set(int(sandboxed))
    WEAK_ISOLATION.set(int(weak))
