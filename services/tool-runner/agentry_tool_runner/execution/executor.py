"""Runs a tool call and turns whatever happened into a `ToolCompleted`.

`Executor` is the seam for sandboxing: the backends (sandbox.py: bubblewrap;
isolation.py: the weak one, an unprivileged uid only) subclass `PlainProcessExecutor` and
override `launch()`, which says how the same child starts (argv, uid, binds, what it is
granted). Validation, limits, timeouts, caps and the mapping of outcomes stay here, the
same for every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from pydantic import ValidationError

from agentry_tool_runner.execution.cgroups import CallCgroup
from agentry_tool_runner.execution.memory_cap import MemoryCap
from agentry_tool_runner.execution.outcome import describe_validation_error, failure, interpret
from agentry_tool_runner.execution.process import ChildRun, Identity, run_child
from agentry_tool_runner.execution.resources import SAMPLE_DOCS, Refused, Resources
from agentry_tool_runner.metrics import TOOL_EXECUTIONS
from agentry_tool_runner.tools.tool import Tool

__all__ = ["Executor", "Launch", "PlainProcessExecutor", "failure", "interpret"]

log = logging.getLogger(__name__)

# JSON escaping can turn one byte of output into six ("\u0000"); the rest is the envelope.
_JSON_EXPANSION, _ENVELOPE_BYTES = 6, 8 * 1024


class Executor(Protocol):
    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        """Never raises for anything the tool or its arguments do; call_id is left empty.
        `scope` names the user whose workspace a workspace tool gets."""
        ...


@dataclass
class Launch:
    """How one call's child starts; a backend builds it per call (`PlainProcessExecutor.launch`)."""

    argv: list[str]
    cwd: str
    # Keyword arguments granted beyond the model's (`workspace`, `docs`, `allowed_hosts`).
    context: dict[str, Any] = field(default_factory=dict)
    import_paths: list[str] = field(default_factory=list)
    identity: Identity | None = None
    # Where RLIMIT_NPROC is set: not at all; on the spawned process ("spawn": it then counts
    # every process of its uid); or by the child inside the sandbox's user namespace
    # ("child": the kernel counts per user namespace, so per call).
    nproc: Literal["none", "spawn", "child"] = "none"
    pass_fds: tuple[int, ...] = ()
    # Directories removed once the call is over (pass_fds are closed then too).
    scratch: list[str] = field(default_factory=list)


class PlainProcessExecutor:
    """Each call in a fresh `python -I -m agentry_tool_runner.execution.child` under rlimits, as the
    worker's own user: the base the sandbox backends (sandbox.py, isolation.py) build on, and
    what tests of the tool-call machinery use (it needs no bubblewrap)."""

    def __init__(
        self, python: str = sys.executable, import_paths: Sequence[str] = (), resources: Resources | None = None
    ) -> None:
        self.python = python
        # Extra sys.path entries for the child; tests use it for test-only tools.
        self.import_paths = list(import_paths)
        self.resources = resources or Resources(Path("data/workspaces").resolve(), SAMPLE_DOCS)
        # The backends cap each call's memory as a whole; the plain child (tests) is not capped.
        self.memory_cap: MemoryCap | None = None

    def command(self, tool: Tool) -> list[str]:
        # -I: no PYTHON* variables, no user site, no cwd on sys.path; -B: no .pyc writes.
        return [self.python, "-I", "-B", "-m", "agentry_tool_runner.execution.child"]

    def grants(self, tool: Tool, scope: Scope | None, owner: int | None = None) -> dict[str, Any]:
        """The host side of what the tool declared it needs; raises `Refused`."""
        granted: dict[str, Any] = {}
        if tool.workspace != "none":
            granted["workspace"] = str(self.resources.user_folder(scope, owner))
        if tool.docs:
            if not self.resources.docs_dir.is_dir():
                raise Refused("failed", "this worker has no documents to search (TOOL_RUNNER_DOCS_DIR)")
            granted["docs"] = str(self.resources.docs_dir)
        if tool.network == "allowlist":
            granted["allowed_hosts"] = self.resources.hosts()
        return granted

    def launch(self, tool: Tool, scope: Scope | None) -> Launch:
        context = self.grants(tool, scope)
        workdir = tempfile.mkdtemp(prefix=f"agentry-{tool.name}-")
        return Launch(self.command(tool), workdir, context, self.import_paths, scratch=[workdir])

    async def run(self, tool: Tool, arguments: dict[str, Any], scope: Scope | None = None) -> ToolCompleted:
        started = time.monotonic()
        try:
            validated = tool.validate_arguments(arguments)
        except ValidationError as exc:
            return failure(tool.name, "invalid_arguments", describe_validation_error(exc))
        try:
            launch = self.launch(tool, scope)  # not in a thread: a cancel could leak its fds
        except Refused as refused:
            return failure(tool.name, refused.code, refused.message)
        try:
            TOOL_EXECUTIONS.labels(tool=tool.name).inc()
            child = await self.spawn(tool, validated, launch)
        except (OSError, subprocess.SubprocessError) as exc:  # fork/exec/preexec failed: processes, memory, cgroup
            log.error("could not start the tool process", extra={"tool": tool.name, "error": str(exc)})
            return failure(tool.name, "crashed", "the tool process could not be started")
        result = interpret(tool, child)
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    async def spawn(
        self, tool: Tool, validated: dict[str, Any], launch: Launch, timeout: float | None = None
    ) -> ChildRun:
        """Runs the child described by `launch`, then releases what the launch held."""
        request = {
            "tool": tool.name,
            "implementation": tool.implementation,
            "arguments": validated,
            "context": launch.context,
            "max_output_bytes": tool.limits.max_output_bytes,
            "import_paths": launch.import_paths,
        }
        # The whole call's memory: the backends' cap (a cgroup, or lower rlimits); none here.
        limits = self.memory_cap.limits(tool.limits) if self.memory_cap else tool.limits
        cgroup: CallCgroup | None = None
        try:
            cgroup = self.memory_cap.place(tool.limits) if self.memory_cap else None
            if launch.nproc == "child":
                request["max_processes"] = limits.max_processes
            return await run_child(
                launch.argv,
                json.dumps(request).encode(),
                cwd=launch.cwd,
                limits=limits,
                timeout=timeout or tool.timeout_seconds,
                stdout_cap=tool.limits.max_output_bytes * _JSON_EXPANSION + _ENVELOPE_BYTES,
                identity=launch.identity,
                pass_fds=launch.pass_fds,
                limit_processes=launch.nproc == "spawn",
                cgroup_procs=cgroup.procs if cgroup else (),
            )
        finally:
            await asyncio.to_thread(_clean_up, launch, cgroup)


def _clean_up(launch: Launch, cgroup: CallCgroup | None) -> None:
    for fd in launch.pass_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    for path in launch.scratch:
        shutil.rmtree(path, ignore_errors=True)
    if cgroup is not None and not cgroup.remove():
        log.warning("a call cgroup could not be removed", extra={"cgroup": str(cgroup.folders[0])})
