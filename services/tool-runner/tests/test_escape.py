"""The escape suite: hostile code through the real worker (`python -m agentry_tool_runner`,
a process of its own with a secret in its environment), the real broker and the real
sandbox. Memory is `MemoryStandIn` (conftest.py).

Each case runs with the `python` tool and must be contained: a clear error or a harmless
result, none of the call's processes alive afterwards (found by a marker in their command
line, or as processes of the sandbox uid below the worker), the secret never in the
output, and the worker still serving: a calculator call follows every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agentry_tool_runner
import pytest
from agentry_shared.bus import encode
from agentry_shared.contracts.control import CancelRequested
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted, ToolRequested
from agentry_shared.testing import until
from agentry_tool_runner.execution.cgroups import cgroup_mounts
from agentry_tool_runner.tools.registry import REGISTRY

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import CallProcesses, RealWorker, RealWorkerFactory

SECRET = "s3cret"  # as set by conftest.real_worker
PACKAGE = agentry_tool_runner.__file__.rsplit("/", 1)[0]


def scope(user: str = "u1") -> Scope:
    return Scope(tenant_id="t1", user_id=user, conversation_id="c1")


async def ask(
    worker: RealWorker, tool: str, arguments: dict[str, Any], user: str = "u1", turn_id: str | None = None
) -> ToolCompleted:
    declared = REGISTRY.get(tool)
    assert declared is not None
    request = ToolRequested(
        scope=scope(user),
        turn_id=turn_id or f"turn-{uuid.uuid4().hex}",
        call_id=f"call-{uuid.uuid4().hex[:8]}",
        tool=tool,
        arguments=arguments,
        deadline=time.time() + 60,
    )
    body = await worker.bus.request(worker.bus.topology.tool_pool(declared.pool), encode(request), timeout=30)
    reply = TOOL_REPLY.validate_json(body)
    assert isinstance(reply, ToolCompleted)
    return reply


def program(reply: ToolCompleted) -> dict[str, Any]:
    assert reply.ok, reply.error
    result: dict[str, Any] = json.loads(reply.output)
    return result


def failed(code: int | None, *texts: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["exit_code"] == code and all(text in r["stderr"] for text in texts)


def _lines_ending(result: dict[str, Any], text: str) -> int:
    return sum(line.endswith(text) for line in result["stdout"].splitlines())


def _lines_starting(result: dict[str, Any], text: str) -> int:
    return sum(line.startswith(text) for line in result["stdout"].splitlines())


def printed(*texts: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: all(text in r["stdout"] for text in texts)


CASES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "read /etc/shadow": ("open('/etc/shadow').read()", failed(1, "FileNotFoundError")),
    "read the worker's files": (
        "import os\n"
        f"for path in [{PACKAGE + '/calls/handlers.py'!r}, {sys.prefix + '/pyvenv.cfg'!r}, {sys.executable!r},"
        " '/root', '/etc/passwd']:\n"
        "    print(path, 'visible' if os.path.exists(path) else 'missing')\n"
        "print('pids', sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try: print(open(f'/proc/{pid}/{name}', 'rb').read())\n"
        "        except OSError as e: print(pid, name, e)\n",
        lambda r: _lines_ending(r, " missing") == 5 and _lines_ending(r, " visible") == 0 and r["exit_code"] == 0,
    ),
    "read the worker's environment": (
        "import os; print(dict(os.environ)); print(open('/proc/self/environ', 'rb').read())",
        lambda r: "AGENTRY" not in r["stdout"] and "AMQP" not in r["stdout"] and r["exit_code"] == 0,
    ),
    "connect to the broker and elsewhere": (
        "import socket\n"
        "for host, port in [('127.0.0.1', 5672), ('10.0.2.2', 5672), ('1.1.1.1', 443)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2); print('connected', host)\n"
        "    except OSError as e: print('refused', host, e)\n"
        "try: socket.getaddrinfo('rabbitmq', 5672); print('resolved')\n"
        "except OSError as e: print('unresolved', e)\n",
        lambda r: _lines_starting(r, "refused ") == 3 and _lines_starting(r, "unresolved ") == 1,
    ),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", failed(1, "BlockingIOError")),
    "memory bomb": ("x = bytearray(8 * 1024 ** 3)", failed(1, "MemoryError")),
    "growing memory": ("chunks = []\nwhile True:\n    chunks.append(b'x' * 10 ** 7)", failed(1, "MemoryError")),
    "infinite loop": ("while True:\n    pass", failed(-int(signal.SIGXCPU), "CPU time limit")),
    "the CPU limit is in force": (
        "import resource; print(resource.getrlimit(resource.RLIMIT_CPU))",
        lambda r: r["stdout"].strip() == f"({PYTHON_CPU_SECONDS}, {PYTHON_CPU_SECONDS + 1})",
    ),
    "write 1 GB": (
        # In files of 1 MiB, under RLIMIT_FSIZE: what stops it is the space itself running out.
        "for folder in ['/tmp', '/workspace', '', '/dev/shm']:\n"
        "    try:\n"
        "        for index in range(1024):\n"
        "            with open(f'{folder}/big-{index}', 'wb') as f: f.write(b'x' * 1024 * 1024)\n"
        "        print('wrote', folder or '/')\n"
        "    except OSError as e: print('stopped', folder or '/', e.strerror)\n",
        lambda r: (
            r["stdout"].splitlines()
            == [
                "stopped /tmp No space left on device",  # the size-limited tmpfs
                "stopped /workspace Read-only file system",
                "stopped / Read-only file system",
                "stopped /dev/shm Read-only file system",
            ]
        ),
    ),
    "kill the parent, pid 1, everyone": (
        "import os, signal\n"
        "for target in (os.getppid(), 1, -1):\n"
        "    try: os.kill(target, signal.SIGKILL)\n"
        "    except OSError as e: print('could not kill', target, e.strerror)\n"
        "print('still here')",
        printed("still here"),
    ),
    "leave a process behind": (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "print('left a sleeper behind')",
        printed("left a sleeper behind"),
    ),
}


# Cases stopped by a CPU limit or, when the machine is busy, by the wall clock first.
STOPPED_BY_EITHER_LIMIT = {"infinite loop"}
PYTHON_CPU_SECONDS = 5


@pytest.mark.parametrize("case", list(CASES))
async def test_escape_is_contained(sandbox_worker: RealWorker, processes: CallProcesses, case: str) -> None:
    code, contained = CASES[case]
    marker = f"escape-{uuid.uuid4().hex}"
    started = time.monotonic()
    reply = await ask(sandbox_worker, "python", {"code": f"# {marker}\n{code}"})
    assert time.monotonic() - started < 12
    assert SECRET not in reply.model_dump_json()
    if case in STOPPED_BY_EITHER_LIMIT and not reply.ok:
        # On a loaded machine the loop may reach the 10 s wall clock before its 5 s of CPU:
        # stopped either way (that the CPU limit is set is its own case above).
        assert reply.error is not None and reply.error.code == "timeout", reply.error
    else:
        result = program(reply)
        assert contained(result), result
    assert await processes.survivors(marker, sandbox_worker.process.pid) == []
    after = await ask(sandbox_worker, "calculator", {"expression": "6*7"})
    assert (after.ok, after.output) == (True, "42")


HOLDING = "bomb-holding"  # the bomb's name once it holds every process it may have


def _named(found: list[str], name: str) -> bool:
    """Whether one of `found` (CallProcesses.alive's "pid: cmdline") calls itself `name`."""
    for line in found:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if Path(f"/proc/{line.split(':', 1)[0]}/comm").read_text().strip() == name:
                return True
    return False


async def test_a_fork_bomb_does_not_starve_other_calls(sandbox_worker: RealWorker, processes: CallProcesses) -> None:
    """RLIMIT_NPROC is counted in each call's user namespace, not over the shared uid."""
    marker = f"bomb-{uuid.uuid4().hex}"
    bomb = (
        f"# {marker}\nimport os, time\nforked = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3); os._exit(0)\n"
        "        forked += 1\n"
        "except OSError:\n"
        "    print('stopped at', forked)\n"
        f"open('/proc/self/comm', 'w').write({HOLDING!r})\n"  # what the test waits for
        "time.sleep(1.5)"
    )
    other = "import os\npids = [os.fork() or os._exit(0) for _ in range(20)]\nprint(len(pids), 'forked')"
    holding = asyncio.create_task(ask(sandbox_worker, "python", {"code": bomb}))
    below = sandbox_worker.process.pid
    await until(lambda: _named(processes.alive(marker, below), HOLDING), "the bomb holds every process it may have")
    neighbour = await ask(sandbox_worker, "python", {"code": other})
    assert not holding.done(), "the bomb let go before the neighbour ran: nothing was tested"
    assert program(neighbour)["stdout"] == "20 forked\n"
    stopped = program(await holding)["stdout"]
    assert stopped.startswith("stopped at") and int(stopped.split()[-1]) < 32
    assert await processes.survivors(marker, sandbox_worker.process.pid) == []


async def test_cancel_kills_the_sandbox(sandbox_worker: RealWorker, processes: CallProcesses) -> None:
    marker, turn_id = f"cancel-{uuid.uuid4().hex}", f"turn-{uuid.uuid4().hex}"
    code = f"# {marker}\nimport os, time\nos.fork()\ntime.sleep(60)"
    pending = asyncio.create_task(ask(sandbox_worker, "python", {"code": code}, turn_id=turn_id))
    await processes.started(marker, sandbox_worker.process.pid)
    cancel = CancelRequested(conversation_id="c1", turn_id=turn_id)
    await sandbox_worker.bus.publish(sandbox_worker.bus.topology.control_exchange, "", encode(cancel), persistent=False)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.error is not None and reply.error.code == "cancelled"
    assert await processes.survivors(marker, sandbox_worker.process.pid) == []


async def test_a_killed_worker_leaves_no_sandbox_behind(
    start_real_worker: RealWorkerFactory, processes: CallProcesses
) -> None:
    marker = f"orphan-{uuid.uuid4().hex}"
    async with start_real_worker() as worker:
        code = f"# {marker}\nimport os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(60)"
        pending = asyncio.create_task(ask(worker, "python", {"code": code}))
        await processes.started(marker, worker.process.pid)
        pid = worker.process.pid
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()
        assert await processes.survivors(marker, pid) == []
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending


# Eight children of 400 MiB each, under a per-process limit of 512 MiB: 3.2 GB before
# the call was capped as a whole. Counted are those alive *and* holding their 400 MiB at
# the end (under a cgroup the OOM killer takes some back; under rlimits they cannot
# allocate it at all).
MEMORY_HOGS = (
    "import os, select, time\n"
    "read_end, write_end = os.pipe()\n"
    "children = {}\n"
    "for index in range(8):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            block = b'x' * (400 * 1024 * 1024)\n"
    "        except MemoryError:\n"
    "            os._exit(3)\n"
    "        os.write(write_end, bytes([index]))\n"
    "        time.sleep(8)\n"
    "        os._exit(0)\n"
    "    children[index] = pid\n"
    "os.close(write_end)\n"
    "held, exited, deadline = set(), set(), time.monotonic() + 7\n"
    "while len(held | exited) < len(children) and time.monotonic() < deadline:\n"
    "    if select.select([read_end], [], [], 0.1)[0]:\n"
    "        held |= set(os.read(read_end, 64))\n"
    "    exited |= {i for i, pid in children.items() if i not in exited and os.waitpid(pid, os.WNOHANG)[0]}\n"
    "alive = {i for i, pid in children.items() if i not in exited and os.waitpid(pid, os.WNOHANG)[0] == 0}\n"
    "print('forked', len(children), 'holding', len(held & alive))\n"
)


async def _hogs_stay_under_the_cap(worker: RealWorker) -> None:
    python = REGISTRY.get("python")
    assert python is not None
    result = program(await ask(worker, "python", {"code": MEMORY_HOGS}))
    holding = int(result["stdout"].split()[-1])
    assert holding * 400 <= python.limits.call_memory_mib, result
    after = await ask(worker, "python", {"code": "block = b'x' * (200 * 1024 * 1024); print(len(block))"})
    assert program(after)["stdout"] == f"{200 * 1024 * 1024}\n"  # a big but fair program still runs


async def test_a_call_cannot_hold_more_memory_than_its_cap(sandbox_worker: RealWorker) -> None:
    """With the mechanism this host allows (cgroups here, when they are writable)."""
    mechanisms = {
        name: await sandbox_worker.metric("agentry_tool_runner_memory_cap", mechanism=name)
        for name in ("cgroup2", "cgroup1", "rlimit")
    }
    assert sorted(mechanisms.values()) == [0, 0, 1], mechanisms
    await _hogs_stay_under_the_cap(sandbox_worker)


def why_no_delegated_cgroup2_memory() -> str | None:
    """Why this host cannot give a worker a cgroup v2 of its own with the memory controller
    delegated (what the cgroup v2 per-call path needs), or None when it can: cgroup v2 with
    the memory controller, root, and systemd to delegate a scope (`Delegate=yes`)."""
    mounts = cgroup_mounts()
    v1_memory = [point for point, kind, options in mounts if kind == "cgroup" and "memory" in options]
    if v1_memory:
        return (
            f"this host's memory controller is on cgroup v1 ({v1_memory[0]}), so no cgroup v2 can have it: "
            "the cgroup v2 per-call path runs where cgroup v2 with the memory controller is delegated "
            "(the GitHub workflow tool-runner-sandbox.yml)"
        )
    v2 = [point for point, kind, _ in mounts if kind == "cgroup2"]
    if not v2:
        return "no cgroup2 filesystem is mounted here: the cgroup v2 per-call path needs one with the memory controller"
    controllers = (Path(v2[0]) / "cgroup.controllers").read_text().split()
    if "memory" not in controllers or "pids" not in controllers:
        return f"cgroup v2 at {v2[0]} offers no memory and pids controllers here ({controllers})"
    if os.geteuid() != 0:
        return "delegating a cgroup v2 (systemd-run --scope -p Delegate=yes) to the worker needs root"
    if shutil.which("systemd-run") is None or not Path("/run/systemd/system").is_dir():
        return "no systemd here to delegate a cgroup v2 with the memory controller to the worker (systemd-run --scope)"
    return None


async def test_the_cgroup2_path_caps_a_call_in_a_delegated_cgroup(start_real_worker: RealWorkerFactory) -> None:
    """The worker alone in a systemd scope with `Delegate=yes` (as in a unit with it, or a
    VM): it moves itself into a leaf, enables memory and pids for its call cgroups, and
    the eight memory hogs of a call share the call's cap; the call cgroups go with the calls.
    AGENTRY_REQUIRE_CGROUP2=1 (the GitHub workflow) turns the skip into a failure."""
    why_not = why_no_delegated_cgroup2_memory()
    if why_not is not None:
        if os.environ.get("AGENTRY_REQUIRE_CGROUP2") == "1":
            pytest.fail(why_not)
        pytest.skip(why_not)
    scope = ["systemd-run", "--scope", "--quiet", "-p", "Delegate=yes", "--"]
    async with start_real_worker(scope) as worker:
        cap = await worker.metric("agentry_tool_runner_memory_cap", mechanism="cgroup2")
        assert cap == 1, worker.log.read_text()[-3000:]  # the log says why cgroups were not used
        await _hogs_stay_under_the_cap(worker)
        own = Path(f"/proc/{worker.process.pid}/cgroup").read_text().strip().removeprefix("0::/")
        mount = next(point for point, kind, _ in cgroup_mounts() if kind == "cgroup2")
        own_cgroup = Path(mount) / own
        # It moved itself into a leaf beside its calls' cgroups, unless the scope came with
        # the controllers enabled already.
        base = own_cgroup.parent if own_cgroup.name == "agentry-worker" else own_cgroup
        assert {"memory", "pids"} <= set((base / "cgroup.subtree_control").read_text().split())
        assert [p.name for p in base.iterdir() if p.name.startswith("agentry-call-")] == []


async def test_without_cgroups_fewer_processes_keep_the_call_under_its_cap(
    start_real_worker: RealWorkerFactory,
) -> None:
    async with start_real_worker(TOOL_RUNNER_CGROUPS="false") as worker:
        assert await worker.metric("agentry_tool_runner_memory_cap", mechanism="rlimit") == 1
        await _hogs_stay_under_the_cap(worker)
        threads = (
            "import threading\nts = [threading.Thread(target=sum, args=([1],)) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]; print('threads ok')"
        )
        assert program(await ask(worker, "python", {"code": threads}))["stdout"] == "threads ok\n"


async def test_an_mcp_stdio_server_is_contained(start_real_worker: RealWorkerFactory) -> None:
    """A hostile MCP server (stdio, in the sandbox with the worker's packages mounted) finds
    no broker, none of the worker's environment but what was configured for it, no host."""
    folder = Path(tempfile.mkdtemp(prefix="agentry-hostile-mcp-"))
    folder.chmod(0o755)
    shutil.copy(Path(__file__).with_name("hostile_mcp_server.py"), folder / "hostile_mcp_server.py")
    (folder / "hostile_mcp_server.py").chmod(0o644)
    server = {
        "command": "python",
        "args": ["/opt/hostile/hostile_mcp_server.py"],
        "python_packages": True,
        "mounts": [{"source": str(folder), "target": "/opt/hostile"}],
        "env": {"GIVEN_TO_IT": "configured"},
        "side_effect": "read_only",
    }
    config = folder / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"hostile": server}}))
    config.chmod(0o644)
    try:
        async with start_real_worker(TOOL_RUNNER_MCP_CONFIG=str(config)) as worker:
            request = ToolRequested(
                scope=scope("u1"),
                turn_id=f"turn-{uuid.uuid4().hex}",
                call_id="call-hostile",
                tool="hostile__probe",
                arguments={},
                deadline=time.time() + 60,
            )
            body = await worker.bus.request(worker.bus.topology.tool_pool("default"), encode(request), timeout=30)
            reply = TOOL_REPLY.validate_json(body)
            assert isinstance(reply, ToolCompleted) and reply.ok, reply
            report = json.loads(reply.output)
            assert SECRET not in reply.output
            assert report["environ"]["GIVEN_TO_IT"] == "configured"
            assert "AMQP_URL" not in report["environ"] and "AGENTRY_TEST_SECRET" not in report["environ"]
            assert report["broker"].startswith("refused")
            assert report["shadow"].startswith("refused")
            assert report["uid"] != 0
            assert len(report["processes"]) <= 3  # bwrap's init, prlimit's exec, nothing of the host
    finally:
        shutil.rmtree(folder, ignore_errors=True)
