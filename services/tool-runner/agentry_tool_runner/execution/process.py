"""Runs one child process under limits and brings back what it wrote, whatever it does.

The child gets its own session (so one killpg reaches everything it forks), optionally the
call's cgroups and a uid and gid of its own (the sandbox's, without supplementary groups), an almost
empty environment (the worker's secrets stay here), a scratch directory as cwd, and
rlimits set between fork and exec. Output is read through a protocol that keeps at most
cap+1 bytes per stream; the process group is SIGKILLed when the call ends, in every case,
including when the task awaiting `run_child` is cancelled.

A worker killed with SIGKILL runs no `finally`: for that case the child asks the kernel
for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`). The kernel means the parent
*thread*: the fork happens in the event loop's thread (asyncio's child-watcher threads
only wait), so the child dies with that thread, i.e. with the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentry_tool_runner.metrics import observe_start
from agentry_tool_runner.tools.tool import Limits

CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
# After the child exits or is killed, how long its pipes may take to close.
_DRAIN_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork: a forked child must not load libraries."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


@dataclass(frozen=True)
class ChildRun:
    returncode: int | None  # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    timed_out: bool
    overflow: str | None  # "stdout" | "stderr" when a stream went over its cap


class _Capture(asyncio.SubprocessProtocol):
    def __init__(self, caps: dict[int, int]) -> None:
        loop = asyncio.get_running_loop()
        self.caps = caps
        self.buffers = {fd: bytearray() for fd in caps}
        self.overflow: int | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.overflowed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buffer, cap = self.buffers[fd], self.caps[fd]
        if len(buffer) <= cap:
            buffer += data[: cap + 1 - len(buffer)]
            if len(buffer) > cap and self.overflow is None:
                self.overflow = fd
                self.overflowed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def child_setup(
    limits: Limits,
    *,
    limit_processes: bool = False,
    identity: Identity | None = None,
    cgroup_procs: Sequence[str] = (),
) -> Callable[[], None]:
    """The preexec_fn: everything is computed here so the forked child only makes syscalls.

    In this order: join the call's cgroups (as the worker, who may write them; before
    exec, so nothing of the call ever runs outside them), drop to the sandbox's uid and
    gid without supplementary groups, ask for the death signal (after the uid change,
    which would clear it), set the rlimits. RLIMIT_NPROC only when asked: it counts every
    process of the uid (root ignores it; under the worker's uid it would count the
    worker's threads); the sandbox sets it inside its user namespace instead (child.py).
    A failure here fails the spawn (subprocess.SubprocessError): never a call uncapped.
    """
    mib = 1024 * 1024
    wanted = {
        # Soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        resource.RLIMIT_CPU: (limits.cpu_seconds, limits.cpu_seconds + 1),
        resource.RLIMIT_AS: (limits.memory_mib * mib, limits.memory_mib * mib),
        resource.RLIMIT_FSIZE: (limits.max_file_bytes, limits.max_file_bytes),
        resource.RLIMIT_NOFILE: (limits.max_open_files, limits.max_open_files),
        resource.RLIMIT_CORE: (0, 0),
    }
    if limit_processes:
        wanted[resource.RLIMIT_NPROC] = (limits.max_processes, limits.max_processes)
    plan = [(which, _within_hard_limit(which, soft, hard)) for which, (soft, hard) in wanted.items()]
    parent = os.getpid()
    procs = tuple(cgroup_procs)

    def apply() -> None:
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0": the writing process
            finally:
                os.close(fd)
        if identity is not None:
            os.setgroups([])
            os.setgid(identity.gid)
            os.setuid(identity.uid)
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the worker died before prctl: nobody would kill us
                os.kill(os.getpid(), signal.SIGKILL)
        for which, values in plan:
            resource.setrlimit(which, values)

    return apply


def _within_hard_limit(which: int, soft: int, hard: int) -> tuple[int, int]:
    """Never ask for more than this process may grant (raising a hard limit fails)."""
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    return min(soft, hard), hard


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class Identity:
    """Who the child runs as: its own uid and gid, no supplementary groups."""

    uid: int
    gid: int


async def run_child(
    argv: Sequence[str],
    stdin: bytes,
    *,
    cwd: str,
    limits: Limits,
    timeout: float,
    stdout_cap: int,
    identity: Identity | None = None,
    pass_fds: Sequence[int] = (),
    limit_processes: bool = False,
    cgroup_procs: Sequence[str] = (),
) -> ChildRun:
    loop = asyncio.get_running_loop()
    caps = {1: stdout_cap, 2: limits.max_stderr_bytes}
    started = time.monotonic()
    transport, capture = await loop.subprocess_exec(
        lambda: _Capture(caps),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=CHILD_ENV,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=child_setup(limits, limit_processes=limit_processes, identity=identity, cgroup_procs=cgroup_procs),
        pass_fds=tuple(pass_fds),
    )
    observe_start(argv, started)
    pgid = transport.get_pid()  # a session leader's pid is its process group id
    try:
        pipe = transport.get_pipe_transport(0)
        assert isinstance(pipe, asyncio.WriteTransport)
        pipe.write(stdin)
        pipe.close()
        try:
            finished, _ = await asyncio.wait(
                [capture.exited, capture.overflowed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            kill_group(pgid)
        # With the whole group dead, nothing holds the pipes open any more.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(capture.closed), _DRAIN_SECONDS)
    finally:
        transport.close()
    return ChildRun(
        returncode=transport.get_returncode(),
        stdout=bytes(capture.buffers[1]),
        stderr=bytes(capture.buffers[2]),
        timed_out=not finished,
        overflow={1: "stdout", 2: "stderr"}.get(capture.overflow or 0),
    )
