"""Which backend runs the tools, decided once at start-up by trying the sandbox.

- bubblewrap works: every tool runs in the sandbox (sandbox.py).
- it does not, and TOOL_RUNNER_ALLOW_WEAK_ISOLATION is set: every tool runs in the weak
  backend: the system Python as the sandbox uid, rlimits and a process group, no
  namespaces (the code can read what "nobody" can read and reach the network).
- it does not, and the flag is not set: tools that need the sandbox are answered
  `sandbox_unavailable`; pure functions of their arguments (`requires_sandbox=False`,
  e.g. calculator) still run in the weak backend.
"Works" includes the seccomp filter: without libseccomp the sandbox counts as unavailable.
Either way a start-up log line and two gauges say which it is. Also decided here, for
every backend: how each call's memory is capped as a whole (memory_cap.py; a log line
and a gauge), and where the code and data a child needs are staged so that the sandbox
user can reach them (stage.py).
"""

from __future__ import annotations

import dataclasses
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

from agentry_tool_runner.execution import cgroups
from agentry_tool_runner.execution.executor import Executor, Launch, PlainProcessExecutor
from agentry_tool_runner.execution.memory_cap import MemoryCap
from agentry_tool_runner.execution.outcome import failure
from agentry_tool_runner.execution.resources import Refused, Resources, reachable
from agentry_tool_runner.execution.sandbox import SANDBOX_PYTHON, SandboxExecutor, sandbox_identity
from agentry_tool_runner.execution.seccomp import SeccompUnavailable
from agentry_tool_runner.execution.stage import BOOT, Stage
from agentry_tool_runner.metrics import MEMORY_CAP, SANDBOX_AVAILABLE, WEAK_ISOLATION
from agentry_tool_runner.tools.builtin import current_time
from agentry_tool_runner.tools.tool import Tool

log = logging.getLogger(__name__)

_PROBE_SECONDS = 10.0


class WeakIsolationExecutor(PlainProcessExecutor):
    """The child on the system Python (`-S -I`), as the sandbox uid when the worker is root,
    on copies of the files it imports, in a scratch directory it owns."""

    def __init__(
        self,
        resources: Resources,
        import_paths: tuple[str, ...] = (),
        python: str = SANDBOX_PYTHON,
        *,
        stage: Stage | None = None,
        memory_cap: MemoryCap | None = None,
    ):
        super().__init__(python, import_paths, resources)
        self.identity = sandbox_identity()
        self.stage = stage or Stage.create()
        self.memory_cap = memory_cap or MemoryCap()

    def launch(self, tool: Tool, scope: Scope | None) -> Launch:
        who = self.identity
        context = self.grants(tool, scope, who.uid if who else None)
        for name in ("workspace", "docs"):
            if name in context and who and not reachable(Path(context[name]), who.uid, who.gid):
                raise Refused("failed", f"the {name} folder is not reachable by the sandbox user on this worker")
        lib = self.stage.code(tool.implementation, tuple(self.import_paths))  # the worker's: read-only
        workdir = tempfile.mkdtemp(prefix=f"agentry-{tool.name}-")
        try:
            if who is not None:
                os.chown(workdir, who.uid, who.gid)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        argv = [self.python, "-S", "-I", "-B", "-c", BOOT.format(root=str(lib))]
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
    memory_cap: MemoryCap = dataclasses.field(default_factory=MemoryCap)

    def describe_memory(self, tool: Tool) -> str:
        """The tool's memory cap in words, for the catalog."""
        return self.memory_cap.describe(tool.limits)


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
    stage = Stage.create()
    memory = memory_cap(settings)
    resources = reachable_resources(Resources.from_settings(settings), settings, stage)
    bwrap = shutil.which("bwrap")
    why = "bwrap not found on PATH (apt-get install bubblewrap)"
    if bwrap is not None:
        why_not: str | None
        try:
            sandbox = SandboxExecutor(bwrap, resources, import_paths, stage=stage, memory_cap=memory)
            why_not = await probe(sandbox)
        except SeccompUnavailable as exc:
            why_not = f"no seccomp filter: {exc}"
        if why_not is None:
            _report(sandboxed=True, weak=False)
            log.info("sandbox: bubblewrap and seccomp work; every tool runs in them", extra={"bwrap": bwrap})
            return Isolation(sandbox, sandboxed=True, weak=False, memory_cap=memory)
        why = why_not
    weak = WeakIsolationExecutor(resources, import_paths, stage=stage, memory_cap=memory)
    allowed = settings.tool_runner_allow_weak_isolation
    _report(sandboxed=False, weak=allowed)
    if allowed:
        log.warning("sandbox unavailable; WEAK ISOLATION: tools run without namespaces", extra={"why": why})
        return Isolation(weak, sandboxed=False, weak=True, memory_cap=memory)
    log.error("sandbox unavailable; tools that need it are refused (sandbox_unavailable)", extra={"why": why})
    return Isolation(PureOnlyExecutor(weak), sandboxed=False, weak=False, memory_cap=memory)


def memory_cap(settings: ToolRunnerSettings) -> MemoryCap:
    """Per-call cgroups where this host lets us create them, else rlimits; logged and exported."""
    found = cgroups.detect() if settings.tool_runner_cgroups else "TOOL_RUNNER_CGROUPS is off"
    cap = MemoryCap(None, found) if isinstance(found, str) else MemoryCap(found)
    for mechanism in ("cgroup2", "cgroup1", "rlimit"):
        MEMORY_CAP.labels(mechanism=mechanism).set(int(mechanism == cap.mechanism))
    if cap.cgroups is None:
        log.warning(
            "memory cap per call: rlimits (fewer processes x a lower RLIMIT_AS); no cgroups",
            extra={"mechanism": cap.mechanism, "why": cap.why_not_cgroups},
        )
    else:
        log.info("memory cap per call: a cgroup each (memory.max, pids.max)", extra={"mechanism": cap.mechanism})
    return cap


def reachable_resources(resources: Resources, settings: ToolRunnerSettings, stage: Stage) -> Resources:
    """The docs and workspaces where the sandbox user can reach them.

    Docs out of its reach are served from a copy in the stage. The workspaces are the
    users' data and are not copied: left at its default (`./data/workspaces`, inside a
    checkout that may be private), the setting moves to /var/tmp/agentry-tool-runner;
    set by the operator to an unreachable folder, it stays, and workspace tools say why
    they fail."""
    identity = sandbox_identity()
    if identity is None:  # bwrap runs as the worker's own uid: it reaches what we reach
        return resources
    uid, gid = identity.uid, identity.gid
    docs, workspaces = resources.docs_dir, resources.workspace_root
    if docs.is_dir() and not reachable(docs / "x", uid, gid):
        docs = stage.folder("docs", docs)
        log.info("docs staged: the sandbox user cannot reach them where they are", extra={"docs": str(docs)})
    if not reachable(workspaces / "x", uid, gid):
        if "tool_runner_workspace_dir" in settings.model_fields_set:
            log.error(
                "TOOL_RUNNER_WORKSPACE_DIR is out of the sandbox user's reach: workspace tools will fail",
                extra={"workspaces": str(workspaces), "uid": uid},
            )
        else:
            workspaces = _shared_folder(Path("/var/tmp/agentry-tool-runner/workspaces"))  # noqa: S108
            log.warning(
                "workspaces moved: the default folder is out of the sandbox user's reach",
                extra={"workspaces": str(workspaces), "default": str(resources.workspace_root)},
            )
    return dataclasses.replace(resources, docs_dir=docs, workspace_root=workspaces)


def _shared_folder(path: Path) -> Path:
    """mkdir -p with 0711 folders (crossable, not listable)."""
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o711)
    return path


def _report(*, sandboxed: bool, weak: bool) -> None:
    SANDBOX_AVAILABLE.set(int(sandboxed))
    WEAK_ISOLATION.set(int(weak))
