"""A stdio MCP server inside the sandbox: one long-lived process per server per worker.

The same bubblewrap as a tool call (sandbox.py: namespaces, no capabilities, a cleared
environment, the seccomp filter, uid 65534, rlimits, death with the worker), with what
a server needs instead of the child's files:
  - its command: `python`/`python3` is the system's /usr/bin/python3 (the sandbox has
    /usr only); with `python_packages: true` the worker's own site-packages are mounted
    read-only at /opt/site-packages and put on PYTHONPATH, so a server installed in the
    worker's venv (`mcp-server-time`) runs on the system Python, which must then be the
    venv's Python version (checked, logged);
  - the folders the operator mounts (`mounts`, read-only, under /opt);
  - its `env` from the configuration, nothing of the worker's (HOME=/tmp, PATH, LANG);
  - network: none (a namespace with only `lo`) unless `network: true`;
  - RLIMIT_NPROC set inside its user namespace by `prlimit` (counted per sandbox).
RLIMIT_CPU counts the server's whole life: past it the server is killed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from agentry_tool_runner.execution.process import CHILD_ENV, Identity, child_setup, kill_group
from agentry_tool_runner.execution.sandbox import SANDBOX_PYTHON, _system, sandbox_identity
from agentry_tool_runner.execution.seccomp import filter_pipe
from agentry_tool_runner.tools.mcp.config import SITE_PACKAGES_INSIDE, ServerConfig
from agentry_tool_runner.tools.tool import Limits

log = logging.getLogger(__name__)

_MIB = 1024 * 1024
_NETWORK_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/ssl")
_LINE_LIMIT = 16 * _MIB  # one JSON-RPC message; longer kills the server
_STDERR_KEEP = 4000


def site_packages() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def python_matches() -> bool:
    """The sandbox's Python runs the worker's compiled packages only at the same version."""
    try:
        import subprocess

        out = subprocess.run(
            [SANDBOX_PYTHON, "-S", "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == str(tuple(sys.version_info[:2]))


def server_limits(server: ServerConfig) -> Limits:
    return Limits(
        cpu_seconds=server.cpu_seconds,
        memory_mib=server.memory_mib,
        max_open_files=server.max_open_files,
        max_processes=server.max_processes,
        tmp_mib=server.tmp_mib,
        max_file_bytes=64 * _MIB,
    )


def server_command(server: ServerConfig) -> list[str]:
    assert server.command is not None
    command = SANDBOX_PYTHON if server.command in ("python", "python3") else server.command
    return [command, *server.args]


def bwrap_arguments(server: ServerConfig) -> list[str]:
    args = ["--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TZ": "UTC"}  # noqa: S108
    if server.python_packages:
        env["PYTHONPATH"] = SITE_PACKAGES_INSIDE
    for name, value in {**env, **server.env}.items():
        args += ["--setenv", name, value]
    args += ["--hostname", "sandbox", *_system(), "--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(server.tmp_mib * _MIB), "--tmpfs", "/tmp"]  # noqa: S108
    if server.network:
        args.append("--share-net")
        for path in _NETWORK_ETC:
            args += ["--ro-bind-try", path, path]
    if server.python_packages:
        for index, folder in enumerate(site_packages()):
            target = SITE_PACKAGES_INSIDE if index == 0 else f"{SITE_PACKAGES_INSIDE}-{index}"
            args += ["--ro-bind", str(folder), target]
    for mount in server.mounts:
        args += ["--ro-bind", str(mount.source), mount.target]
    return [*args, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]  # noqa: S108


async def spawn_server(
    server: ServerConfig, bwrap: str | None, seccomp: bytes | None, identity: Identity | None = None
) -> asyncio.subprocess.Process:
    """Starts the server: in bubblewrap when `bwrap` is given, else weakly (rlimits, uid 65534)."""
    identity = identity if identity is not None else sandbox_identity()
    nproc = f"--nproc={server.max_processes}:{server.max_processes}"
    inner = ["/usr/bin/prlimit", nproc, "--", *server_command(server)]
    fds: list[int] = []
    if bwrap is not None:
        from agentry_tool_runner.execution.sandbox import _args_pipe

        fds.append(_args_pipe(bwrap_arguments(server)))
        argv = [bwrap, "--args", str(fds[0])]
        if seccomp is not None:
            fds.append(filter_pipe(seccomp))
            argv += ["--seccomp", str(fds[1])]
        argv += inner
    else:
        argv = server_command(server)
    env = dict(CHILD_ENV) if bwrap is not None else {**CHILD_ENV, "HOME": "/tmp", **server.env}  # noqa: S108
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd="/",
            start_new_session=True,
            preexec_fn=child_setup(server_limits(server), identity=identity, limit_processes=bwrap is None),
            pass_fds=tuple(fds),
            limit=_LINE_LIMIT,
        )
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def process_transport(process: asyncio.subprocess.Process, name: str) -> AsyncIterator[TransportStreams]:
    """The SDK's stream pair over the process's pipes, newline-delimited JSON-RPC; kills the
    process group when the session ends."""
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    async with anyio.create_task_group() as group:
        group.start_soon(_read, process, name, read_send)
        group.start_soon(_write, process, write_receive)
        group.start_soon(_log_stderr, process, name)
        try:
            yield read_receive, write_send
        finally:
            kill_group(process.pid)
            group.cancel_scope.cancel()


async def _read(
    process: asyncio.subprocess.Process, name: str, sink: anyio.abc.ObjectSendStream[SessionMessage | Exception]
) -> None:
    assert process.stdout is not None
    async with sink:
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                log.error("MCP server wrote a message over the size limit; killing it", extra={"server": name})
                kill_group(process.pid)
                return
            if not line:
                return
            if line.strip():
                await sink.send(_parse(line))


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


async def _write(process: asyncio.subprocess.Process, source: anyio.abc.ObjectReceiveStream[SessionMessage]) -> None:
    assert process.stdin is not None
    async with source:
        async for message in source:
            data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
            try:
                process.stdin.write(data.encode() + b"\n")
                await process.stdin.drain()
            except (ConnectionError, OSError):
                return


async def _log_stderr(process: asyncio.subprocess.Process, name: str) -> None:
    assert process.stderr is not None
    kept = b""
    while chunk := await process.stderr.read(65536):
        kept = (kept + chunk)[-_STDERR_KEEP:]
    if kept:
        log.info("MCP server stderr", extra={"server": name, "stderr": kept.decode(errors="replace")})
