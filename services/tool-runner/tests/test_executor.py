"""The executor with real child processes, using test-only tools from probe_tools.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from agentry_tool_runner.execution.executor import PlainProcessExecutor, interpret
from agentry_tool_runner.execution.process import CHILD_ENV, ChildRun, run_child
from agentry_tool_runner.tools.registry import REGISTRY, Limits, Tool
from pydantic import BaseModel, ConfigDict

HERE = Path(__file__).parent


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PidFileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pid_file: str
    seconds: float = 30.0


class SizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class MibParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mib: int


def probe(function: str, params: type[BaseModel] = NoParams, timeout: float = 10.0, **limits: int) -> Tool:
    return Tool(
        name=f"probe_{function}",
        description="test only",
        params=params,
        implementation=f"probe_tools:{function}",
        timeout_seconds=timeout,
        limits=Limits(**limits),
    )


@pytest.fixture
def executor() -> PlainProcessExecutor:
    return PlainProcessExecutor(import_paths=[str(HERE)])


def alive(pid: int) -> bool:
    """A zombie counts as dead: it runs nothing and holds nothing but its pid. A process
    reaped while its stat is read fails the read with ESRCH: gone too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def survivors(*pids: int) -> list[int]:
    """The pids still alive after up to 2s (a killed process is reaped asynchronously)."""
    for _ in range(40):
        if not any(alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


async def test_calculator_in_a_child(executor: PlainProcessExecutor) -> None:
    tool = REGISTRY.get("calculator")
    assert tool is not None
    result = await executor.run(tool, {"expression": "37*91"})
    assert (result.ok, result.output, result.error) == (True, "3367", None)
    failed = await executor.run(tool, {"expression": "1/0"})
    assert not failed.ok and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("failed", "division by zero")


async def test_invalid_arguments_do_not_spawn(executor: PlainProcessExecutor) -> None:
    tool = probe("exit_hard")  # would be "crashed" if it ran
    result = await executor.run(tool, {"unexpected": 1})
    assert result.error is not None and result.error.code == "invalid_arguments"
    assert "unexpected" in result.error.message


async def test_timeout_kills_the_whole_process_group(executor: PlainProcessExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    result = await executor.run(probe("spawn_and_sleep", PidFileParams, timeout=1.0), {"pid_file": str(pid_file)})
    assert time.monotonic() - started < 5
    assert result.error is not None and result.error.code == "timeout"
    child, grandchild = map(int, pid_file.read_text().split())
    assert await survivors(child, grandchild) == []


async def test_nothing_survives_a_successful_call(executor: PlainProcessExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    result = await executor.run(probe("spawn_and_return", PidFileParams), {"pid_file": str(pid_file)})
    # The grandchild holds the result pipe open; the call must not wait for it.
    assert time.monotonic() - started < 3
    assert (result.ok, result.output) == (True, "returned")
    assert await survivors(*map(int, pid_file.read_text().split())) == []


async def test_child_gets_no_secrets_and_a_scratch_cwd(
    executor: PlainProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRY_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AMQP_URL", "amqp://admin:hunter2@broker/")
    result = await executor.run(probe("environment"), {})
    assert result.ok, result.error
    assert "hunter2" not in result.output
    seen = json.loads(result.output)
    assert set(seen["env"]) <= set(CHILD_ENV) | {"LC_CTYPE"}
    assert seen["cwd"] != os.getcwd()
    assert not await asyncio.to_thread(Path(seen["cwd"]).exists)  # removed after the call


async def test_output_over_the_tool_limit(executor: PlainProcessExecutor) -> None:
    tool = probe("big_output", SizeParams, max_output_bytes=1000)
    assert (await executor.run(tool, {"size": 1000})).ok
    result = await executor.run(tool, {"size": 1001})
    assert result.error is not None and result.error.code == "output_too_large"


async def test_prints_do_not_corrupt_the_result_but_floods_are_cut(executor: PlainProcessExecutor) -> None:
    tool = probe("flood_fd1", SizeParams, max_stderr_bytes=64 * 1024)
    quiet = await executor.run(tool, {"size": 100})
    assert (quiet.ok, quiet.output) == (True, "clean result")
    flood = await executor.run(tool, {"size": 1024 * 1024})
    assert flood.error is not None and flood.error.code == "output_too_large"


async def test_stdout_is_read_up_to_its_cap_only(tmp_path: Path) -> None:
    run = await run_child(
        [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"],
        b"",
        cwd=str(tmp_path),
        limits=Limits(),
        timeout=10,
        stdout_cap=1000,
    )
    assert (run.overflow, len(run.stdout), run.timed_out) == ("stdout", 1001, False)


async def test_cpu_limit(executor: PlainProcessExecutor) -> None:
    result = await executor.run(probe("burn_cpu", cpu_seconds=1), {})
    assert result.error is not None and result.error.code == "crashed"
    assert "SIGXCPU" in result.error.message or "SIGKILL" in result.error.message


async def test_memory_limit(executor: PlainProcessExecutor) -> None:
    tool = probe("allocate", MibParams, memory_mib=128)
    result = await executor.run(tool, {"mib": 512})
    assert result.error is not None and (result.error.code, result.error.message) == ("failed", "out of memory")


async def test_exceptions_and_hard_exits(executor: PlainProcessExecutor) -> None:
    raised = await executor.run(probe("boom"), {})
    assert raised.error is not None and (raised.error.code, raised.error.message) == ("failed", "RuntimeError: boom")
    exited = await executor.run(probe("exit_hard"), {})
    assert exited.error is not None and exited.error.code == "crashed"
    missing = await executor.run(probe("no_such_function"), {})
    assert missing.error is not None and missing.error.code == "crashed"


def test_a_lying_child_is_not_believed() -> None:
    tool = probe("big_output", SizeParams, max_output_bytes=10)

    def child(stdout: bytes, returncode: int = 0) -> ChildRun:
        return ChildRun(returncode=returncode, stdout=stdout, stderr=b"", timed_out=False, overflow=None)

    too_long = interpret(tool, child(json.dumps({"ok": True, "output": "x" * 11}).encode()))
    assert too_long.error is not None and too_long.error.code == "output_too_large"
    odd_code = interpret(tool, child(json.dumps({"ok": False, "error": {"code": "ok", "message": "m"}}).encode()))
    assert odd_code.error is not None and odd_code.error.code == "failed"
    garbage = interpret(tool, child(b"[1, 2"))
    assert garbage.error is not None and garbage.error.code == "crashed"
    killed = interpret(tool, child(b"", returncode=-9))
    assert killed.error is not None and "SIGKILL" in killed.error.message


async def test_cancelling_the_call_kills_its_group_at_once(executor: PlainProcessExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    tool = probe("spawn_and_sleep", PidFileParams, timeout=60.0)
    task = asyncio.create_task(executor.run(tool, {"pid_file": str(pid_file), "seconds": 60}))
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.05)
    child, grandchild = map(int, pid_file.read_text().split())
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await survivors(child, grandchild) == []
    assert time.monotonic() - started < 0.5


async def test_the_child_dies_with_the_worker(executor: PlainProcessExecutor) -> None:
    """PR_SET_PDEATHSIG is set (test_reliability kills a real worker with -9)."""
    result = await executor.run(probe("death_signal"), {})
    assert (result.ok, result.output) == (True, str(int(signal.SIGKILL)))
