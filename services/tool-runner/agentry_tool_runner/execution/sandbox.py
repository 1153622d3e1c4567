"""The sandbox backend: each call's child inside bubblewrap, as an unprivileged user.

bwrap runs as uid/gid 65534 without supplementary groups (when the worker is root; else
as the worker's uid), in a process group of its own, under the tool's rlimits (but
RLIMIT_NPROC, which the child sets inside its user namespace, where the kernel counts
per call), and builds for the child:
  - new user, pid, ipc, uts, cgroup and network namespaces (`--unshare-all`); the network
    is shared only for a tool whose policy is `allowlist`; no nested user namespaces;
  - a root of its own: /usr (+ the /bin, /lib* links) read-only, a fresh /proc and /dev,
    a size-limited tmpfs /tmp, the child's few files under /opt/agentry (the worker's
    staged copy, stage.py, reachable wherever the checkout lives), and what the tool
    was granted (/workspace, /docs); nothing of /etc but the resolver and CA files for a
    network tool; the root itself remounted read-only;
  - a seccomp filter (seccomp.py: keyrings, ptrace, mounts, namespaces, modules, bpf,
    io_uring, ... answered EPERM);
  - no capabilities, a cleared environment (PATH and LANG), its own session, and death
    when bwrap dies (`--die-with-parent`); bwrap dies with the worker (PR_SET_PDEATHSIG)
    or its process group's SIGKILL; the child is pid 1 of the pid namespace
    (`--as-pid-1`), and its death takes every process of the call along, even those that
    left the process group, before bwrap exits: nothing lingers once a call has ended.
bwrap's own arguments come through a pipe (`--args`), so /proc/1/cmdline in the sandbox
shows no host path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from agentry_shared.contracts.scope import Scope

from agentry_tool_runner.execution.executor import Launch, PlainProcessExecutor
from agentry_tool_runner.execution.memory_cap import MemoryCap
from agentry_tool_runner.execution.process import ChildRun, Identity
from agentry_tool_runner.execution.resources import Refused, Resources, reachable
from agentry_tool_runner.execution.seccomp import build_filter, filter_pipe
from agentry_tool_runner.execution.stage import BOOT, Stage
from agentry_tool_runner.tools.tool import Tool

SANDBOX_PYTHON = "/usr/bin/python3"
NOBODY = 65534
INSIDE = "/opt/agentry"
_MIB = 1024 * 1024
# What a network tool needs of /etc: name resolution and the CA certificates.
_NETWORK_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/ssl")
# The sandbox's own /tmp: a private tmpfs, not the host's.
_TMP = "/tmp"  # noqa: S108
_ARGS_LIMIT = 60_000  # below a pipe's buffer: written before bwrap starts reading


def sandbox_identity() -> Identity | None:
    """nobody/nogroup when the worker may switch users (root); else bwrap maps the worker's
    own uid. Either way RLIMIT_NPROC is set inside the call's user namespace (child.py)."""
    return Identity(NOBODY, NOBODY) if os.geteuid() == 0 else None


def _system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        path = Path(name)
        if path.is_symlink():  # merged /usr: recreate the link, bind nothing more
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return args


def bwrap_arguments(tool: Tool, binds: list[tuple[Path, str, bool]]) -> list[str]:
    """bwrap's options for one call; `binds` are (host path, sandbox path, writable)."""
    args = ["--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    args += ["--hostname", "sandbox", *_system(), "--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(tool.limits.tmp_mib * _MIB), "--tmpfs", _TMP]
    if tool.network == "allowlist":
        args.append("--share-net")
        for path in _NETWORK_ETC:
            args += ["--ro-bind-try", path, path]
    for source, target, writable in binds:
        args += ["--bind" if writable else "--ro-bind", str(source), target]
    # The root and /dev are tmpfs without a size: read-only, or they would be unbounded memory.
    return [*args, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _TMP]


class SandboxExecutor(PlainProcessExecutor):
    """The same child as the plain executor, started by bwrap on the staged files only."""

    def __init__(
        self,
        bwrap: str,
        resources: Resources,
        import_paths: tuple[str, ...] = (),
        python: str = SANDBOX_PYTHON,
        identity: Identity | None = None,
        *,
        stage: Stage | None = None,
        seccomp: bytes | None = None,
        memory_cap: MemoryCap | None = None,
    ) -> None:
        """Raises SeccompUnavailable when no filter is given and libseccomp cannot build one."""
        super().__init__(python, import_paths, resources)
        self.bwrap = bwrap
        self.identity = identity if identity is not None else sandbox_identity()
        self.stage = stage or Stage.create()
        self.seccomp = seccomp if seccomp is not None else build_filter()
        self.memory_cap = memory_cap or MemoryCap()

    def command(self, tool: Tool) -> list[str]:
        # -S: no site (nothing but the standard library); -I: no PYTHON* variables, no user site.
        return [self.python, "-S", "-I", "-B", "-c", BOOT.format(root=INSIDE)]

    def launch(self, tool: Tool, scope: Scope | None) -> Launch:
        granted = self.grants(tool, scope, self.identity.uid if self.identity else None)
        binds = [(self.stage.code(tool.implementation, tuple(self.import_paths)), INSIDE, False)]
        context: dict[str, Any] = {}
        if "workspace" in granted:
            binds.append((Path(granted["workspace"]), "/workspace", tool.workspace == "write"))
            context["workspace"] = "/workspace"
        if "docs" in granted:
            binds.append((Path(granted["docs"]), "/docs", False))
            context["docs"] = "/docs"
        if "allowed_hosts" in granted:
            context["allowed_hosts"] = granted["allowed_hosts"]
        for source, target, _ in binds:
            if self.identity is not None and not reachable(source, self.identity.uid, self.identity.gid):
                raise Refused("failed", f"{target} cannot be mounted: the sandbox user cannot reach it on this worker")
        arguments = _args_pipe(bwrap_arguments(tool, binds))
        try:
            seccomp = filter_pipe(self.seccomp)
        except OSError:
            os.close(arguments)
            raise
        argv = [self.bwrap, "--args", str(arguments), "--seccomp", str(seccomp), *self.command(tool)]
        return Launch(argv, "/", context, identity=self.identity, nproc="child", pass_fds=(arguments, seccomp))

    async def spawn(
        self, tool: Tool, validated: dict[str, Any], launch: Launch, timeout: float | None = None
    ) -> ChildRun:
        run = await super().spawn(tool, validated, launch, timeout)
        # bwrap exits 128+n when its child was killed by signal n: report it as the kill it was.
        if run.returncode is not None and run.returncode > 128:
            run = dataclasses.replace(run, returncode=128 - run.returncode)
        return run


def _args_pipe(arguments: list[str]) -> int:
    """The read end of a pipe holding `arguments`, NUL-separated, for `bwrap --args FD`."""
    data = b"".join(argument.encode() + b"\0" for argument in arguments)
    if len(data) > _ARGS_LIMIT:
        raise ValueError("bwrap arguments too long for one pipe write")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end
