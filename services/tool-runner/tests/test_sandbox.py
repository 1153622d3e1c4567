"""The sandbox backend itself (no broker): bwrap's options, what the child sees, the probe
and the choice of backend at start-up. Needs bubblewrap (apt-get install bubblewrap)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agentry_shared.contracts.scope import Scope
from agentry_shared.settings import ToolRunnerSettings
from agentry_tool_runner.execution.isolation import PureOnlyExecutor, WeakIsolationExecutor, choose, probe
from agentry_tool_runner.execution.resources import SAMPLE_DOCS, Resources, reachable
from agentry_tool_runner.execution.sandbox import NOBODY, SANDBOX_PYTHON, SandboxExecutor, bwrap_arguments
from agentry_tool_runner.execution.stage import PACKAGE_DIR
from agentry_tool_runner.metrics import SANDBOX_AVAILABLE, TOOL_EXECUTIONS, WEAK_ISOLATION
from agentry_tool_runner.tools.registry import REGISTRY, Tool

if TYPE_CHECKING:  # test modules cannot import conftest at run time (importlib mode)
    from conftest import CallProcesses

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed (apt-get install bubblewrap)")
SCOPE = Scope(tenant_id="t1", user_id="u1", conversation_id="c1")


def tool(name: str) -> Tool:
    found = REGISTRY.get(name)
    assert found is not None
    return found


@pytest.fixture
def workspaces() -> Iterator[Path]:
    """Not under pytest's 0700 temporary folder: the sandbox user must be able to reach it."""
    folder = Path(tempfile.mkdtemp(prefix="agentry-test-workspaces-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sandbox(workspaces: Path) -> SandboxExecutor:
    assert BWRAP is not None
    return SandboxExecutor(BWRAP, Resources(workspaces, SAMPLE_DOCS))


def test_bwrap_options() -> None:
    python = bwrap_arguments(tool("python"), [(Path("/data/ws/t1/u1"), "/workspace", False)])
    for option in ("--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent"):
        assert option in python
    assert " --cap-drop ALL " in f" {' '.join(python)} " and "--clearenv" in python and "--new-session" in python
    assert "--share-net" not in python and not [arg for arg in python if arg.startswith("/etc")]
    assert python[-6:] == ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    assert python[python.index("--tmpfs") - 1] == str(64 * 1024 * 1024)
    fetch = bwrap_arguments(tool("http_fetch"), [])
    assert "--share-net" in fetch and "/etc/resolv.conf" in fetch and "/etc/shadow" not in fetch


async def printed(sandbox: SandboxExecutor, code: str) -> str:
    """What `code` printed, run by the sandboxed `python` tool (which must succeed)."""
    result = await sandbox.run(tool("python"), {"code": code}, SCOPE)
    assert result.ok, result.error
    stdout: str = json.loads(result.output)["stdout"]
    return stdout


async def test_what_the_child_sees(sandbox: SandboxExecutor) -> None:
    code = (
        "import json, os, socket\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
        "       'caps': status['CapEff'].strip(), 'no_new_privs': status['NoNewPrivs'].strip(),\n"
        "       'host': socket.gethostname(), 'nets': [n for _, n in socket.if_nameindex()],\n"
        "       'staged': sorted(os.listdir('/opt/agentry/agentry_tool_runner')), 'root': sorted(os.listdir('/')),\n"
        "       'env': sorted(os.environ), 'ppid': os.getppid()}))"
    )
    seen = json.loads(await printed(sandbox, code))
    if os.geteuid() == 0:
        assert (seen["uid"], seen["gid"], seen["groups"]) == (NOBODY, NOBODY, [])
    assert (seen["caps"], seen["no_new_privs"]) == ("0000000000000000", "1")
    assert (seen["host"], seen["nets"]) == ("sandbox", ["lo"])
    assert seen["staged"] == ["__init__.py", "__pycache__", "execution", "tools"]
    assert seen["root"] == ["bin", "dev", "lib", "lib64", "opt", "proc", "sbin", "tmp", "usr", "workspace"]
    assert set(seen["env"]) <= {"PATH", "LANG", "PWD"}
    assert seen["ppid"] == 1  # the child runner is pid 1 of the call's pid namespace


async def test_the_child_runs_our_code_precompiled_not_compiled_per_call(sandbox: SandboxExecutor) -> None:
    """The child cannot write a .pyc (-B, a read-only bind): the staged copies come with
    theirs, which the sandbox's own Python accepts (same version, matching sources)."""
    code = (
        "import subprocess, sys\n"
        'load = \'import sys; sys.path.insert(0, "/opt/agentry"); '
        "import agentry_tool_runner.execution.child, agentry_tool_runner.tools.builtin.python'\n"
        "run = subprocess.run([sys.executable, '-S', '-I', '-B', '-v', '-c', load], capture_output=True, text=True)\n"
        "print('\\n'.join(line for line in run.stderr.splitlines() if '/opt/agentry/' in line))"
    )
    loaded = await printed(sandbox, code)
    for module in ("execution/child", "tools/builtin/python"):
        folder, name = module.rsplit("/", 1)
        assert f"code object from '/opt/agentry/agentry_tool_runner/{folder}/__pycache__/{name}.cpython-" in loaded


async def test_the_wall_clock_kills_the_whole_call(sandbox: SandboxExecutor, processes: CallProcesses) -> None:
    quick = dataclasses.replace(tool("python"), timeout_seconds=1.0)
    marker = f"sleeper-{uuid.uuid4().hex}"
    code = f"# {marker}\nimport os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(60)"
    result = await sandbox.run(quick, {"code": code}, SCOPE)
    assert result.error is not None and result.error.code == "timeout"
    assert await processes.survivors(marker, os.getpid()) == []


async def test_fetching_with_an_empty_allowlist_is_denied_without_a_process(sandbox: SandboxExecutor) -> None:
    before = TOOL_EXECUTIONS.labels(tool="http_fetch")._value.get()
    result = await sandbox.run(tool("http_fetch"), {"url": "https://example.com/"}, SCOPE)
    assert result.error is not None and result.error.code == "denied"
    assert "TOOL_RUNNER_HTTP_ALLOWLIST is empty" in result.error.message
    assert TOOL_EXECUTIONS.labels(tool="http_fetch")._value.get() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the sandbox uid")
async def test_folders_the_sandbox_user_cannot_reach_are_refused_clearly(tmp_path: Path) -> None:
    hidden = tmp_path / "private"  # pytest's base folder is 0700 root
    (hidden / "docs").mkdir(parents=True)
    assert not reachable(hidden / "docs", NOBODY, NOBODY)
    assert BWRAP is not None
    executor = SandboxExecutor(BWRAP, Resources(Path("/tmp/agentry-unused"), hidden / "docs"))
    result = await executor.run(tool("search_docs"), {"query": "x"}, SCOPE)
    assert result.error is not None and "/docs cannot be mounted" in result.error.message


async def test_probe_says_why_the_sandbox_does_not_work(sandbox: SandboxExecutor) -> None:
    assert await probe(sandbox) is None
    assert BWRAP is not None
    broken = SandboxExecutor("/nonexistent/bwrap", sandbox.resources)
    assert "could not be started" in (await probe(broken) or "")
    no_python = SandboxExecutor(BWRAP, sandbox.resources, python="/nonexistent/python3")
    assert "not found" in (await probe(no_python) or "")


async def test_start_up_picks_the_backend_and_says_so(monkeypatch: pytest.MonkeyPatch, workspaces: Path) -> None:
    settings = ToolRunnerSettings(tool_runner_workspace_dir=workspaces)
    chosen = await choose(settings)
    assert isinstance(chosen.executor, SandboxExecutor) and (chosen.sandboxed, chosen.weak) == (True, False)
    assert (SANDBOX_AVAILABLE._value.get(), WEAK_ISOLATION._value.get()) == (1, 0)

    monkeypatch.setattr(shutil, "which", lambda _: None)  # as on a machine without bubblewrap
    refusing = await choose(settings)
    assert isinstance(refusing.executor, PureOnlyExecutor) and (refusing.sandboxed, refusing.weak) == (False, False)
    assert (SANDBOX_AVAILABLE._value.get(), WEAK_ISOLATION._value.get()) == (0, 0)
    refused = await refusing.executor.run(tool("python"), {"code": "print(1)"}, SCOPE)
    assert refused.error is not None and refused.error.code == "sandbox_unavailable"
    pure = await refusing.executor.run(tool("calculator"), {"expression": "2**10"}, SCOPE)
    assert (pure.ok, pure.output) == (True, "1024")

    weak = await choose(settings.model_copy(update={"tool_runner_allow_weak_isolation": True}))
    assert isinstance(weak.executor, WeakIsolationExecutor) and (weak.sandboxed, weak.weak) == (False, True)
    assert (SANDBOX_AVAILABLE._value.get(), WEAK_ISOLATION._value.get()) == (0, 1)
    ran = await weak.executor.run(tool("python"), {"code": "import os; print(os.getuid())"}, SCOPE)
    expected = NOBODY if os.geteuid() == 0 else os.geteuid()
    assert ran.ok and json.loads(ran.output)["stdout"] == f"{expected}\n"
    SANDBOX_AVAILABLE.set(1)  # this machine's truth again, for tests that follow
    WEAK_ISOLATION.set(0)


@pytest.mark.parametrize("name", [t.name for t in REGISTRY if t.backend == "child"])
def test_tool_modules_load_on_the_bare_system_python(name: str) -> None:
    """The child's side of each tool imports with the standard library only (-S -I)."""
    module = tool(name).implementation.partition(":")[0]
    code = (
        f"import sys; sys.path.insert(0, {str(PACKAGE_DIR.parent)!r}); "
        "from agentry_tool_runner.tools import failure; failure.enter_child(); "
        f"import {module}; assert 'pydantic' not in sys.modules"
    )
    python = SANDBOX_PYTHON if os.path.exists(SANDBOX_PYTHON) else sys.executable
    done = subprocess.run([python, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr


async def test_seccomp_refuses_what_a_tool_never_needs(sandbox: SandboxExecutor) -> None:
    """Each denied call fails with EPERM (a clean error, not a kill); Python works as usual."""
    pyseccomp = pytest.importorskip("pyseccomp")
    names = ["io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
             "ptrace", "unshare", "setns", "mount", "umount2", "pivot_root", "bpf", "perf_event_open",
             "userfaultfd", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module",
             "delete_module", "kexec_load", "acct", "swapon", "swapoff", "reboot", "settimeofday",
             "clock_settime", "quotactl", "lookup_dcookie", "personality"]  # fmt: skip
    arch = pyseccomp.system_arch()
    numbers = {name: pyseccomp.resolve_syscall(arch, name) for name in names}
    code = (
        "import ctypes, errno, json\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "seen = {}\n"
        f"for name, number in {numbers!r}.items():\n"
        "    ctypes.set_errno(0)\n"
        "    arg = 0x0040000 if name == 'personality' else 0  # ADDR_NO_RANDOMIZE\n"
        "    result = libc.syscall(number, arg, 0, 0, 0, 0)\n"
        "    seen[name] = errno.errorcode.get(ctypes.get_errno(), 'none') if result == -1 else 'ran'\n"
        "import subprocess, sys, threading, tempfile\n"
        "t = threading.Thread(target=print); t.start(); t.join()\n"
        "with tempfile.TemporaryFile() as f: f.write(b'x')\n"
        "seen['python'] = subprocess.run([sys.executable, '-c', 'print(6*7)'], capture_output=True).stdout.decode()\n"
        "print(json.dumps(seen))"
    )
    result = await sandbox.run(tool("python"), {"code": code}, SCOPE)
    assert result.ok, result.error
    run = json.loads(result.output)
    assert run["exit_code"] == 0, run["stderr"]
    seen = json.loads(run["stdout"].splitlines()[-1])
    assert seen.pop("python") == "42\n"
    assert seen == dict.fromkeys(names, "EPERM")


def test_the_filter_covers_dockers_refusals() -> None:
    from agentry_tool_runner.execution.seccomp import DENIED, build_filter

    for name in ("keyctl", "ptrace", "mount", "unshare", "setns", "bpf", "kexec_load", "io_uring_setup"):
        assert name in DENIED
    assert len(build_filter()) > 8 * len(DENIED)  # one BPF instruction (8 bytes) per call at least


async def test_the_sandbox_runs_from_a_checkout_the_sandbox_user_cannot_reach(tmp_path: Path) -> None:
    """The package copied under a 0700 folder (a private home, `mktemp -d`) and imported from
    there: its code (and the sample docs) are staged where uid 65534 can reach them."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    shutil.copytree(PACKAGE_DIR, private / "agentry_tool_runner", ignore=shutil.ignore_patterns("__pycache__"))
    workspaces = Path(tempfile.mkdtemp(prefix="agentry-test-workspaces-"))
    workspaces.chmod(0o711)
    script = (
        "import asyncio, json, sys\n"
        f"sys.path.insert(0, {str(private)!r})\n"
        "import agentry_tool_runner\n"
        f"assert agentry_tool_runner.__file__.startswith({str(private)!r}), agentry_tool_runner.__file__\n"
        "from agentry_shared.contracts.scope import Scope\n"
        "from agentry_shared.settings import ToolRunnerSettings\n"
        "from agentry_tool_runner.execution.isolation import choose\n"
        "from agentry_tool_runner.tools.registry import REGISTRY\n"
        "async def main():\n"
        f"    chosen = await choose(ToolRunnerSettings(tool_runner_workspace_dir={str(workspaces)!r}))\n"
        "    scope = Scope(tenant_id='t1', user_id='u1', conversation_id='c1')\n"
        "    ran = await chosen.executor.run(REGISTRY.get('python'), {'code': 'print(6*7)'}, scope)\n"
        "    found = await chosen.executor.run(REGISTRY.get('search_docs'), {'query': 'sandbox'}, scope)\n"
        "    print(json.dumps([chosen.sandboxed, ran.ok and json.loads(ran.output)['stdout'], found.ok]))\n"
        "asyncio.run(main())\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=private)
    finally:
        shutil.rmtree(workspaces, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    if os.geteuid() == 0:
        assert not reachable(private / "agentry_tool_runner", NOBODY, NOBODY)
    assert json.loads(done.stdout.splitlines()[-1]) == [True, "42\n", True], done.stderr[-3000:]
