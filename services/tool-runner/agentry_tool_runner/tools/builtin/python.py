"""Runs Python code the model wrote, and returns what it printed.

The code runs in a process of its own (`python3 -I -S`: standard library only) inside
the call's sandbox: no network, the user's workspace read-only at /workspace (its
working directory), a private /tmp, the call's rlimits. Its stdout and stderr come back
as JSON, each cut at 16 KiB with a marker saying how much was cut.

Side effect `idempotent`: the code is arbitrary, so its output may differ from run to
run (time, randomness), but it cannot change anything that outlives the call (nothing
writable persists, no network), so running it twice changes nothing in the world. Not
`read_only` only because that would promise the same answer twice.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

from agentry_tool_runner.tools.builtin._text import clip, fit
from agentry_tool_runner.tools.failure import in_worker

MAX_CODE_CHARS = 20_000
STREAM_CAP = 16 * 1024
OUTPUT_LIMIT = 64 * 1024
# Past this much output the program is stopped: reading a flood costs CPU too.
FLOOD_BYTES = 8 * 1024 * 1024
# Once the program has exited, how long output still in the pipes is read (a process it
# left behind may hold them open; the sandbox kills it when the call ends).
AFTER_EXIT_SECONDS = 0.2
_HINTS = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed", signal.SIGXFSZ: "file size limit"}


def run(code: str, workspace: str | None = None) -> str:
    program = subprocess.Popen(  # running the model's code is the point; the sandbox contains it
        [sys.executable, "-I", "-S", "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workspace or os.getcwd(),
    )
    kept, seen, flooded = _collect(program)
    exit_code = program.wait()
    notes = []
    if flooded:
        notes.append(f"[stopped: more than {FLOOD_BYTES} bytes of output]")
    elif exit_code < 0:
        notes.append(_killed(-exit_code))

    def build(cap: int) -> dict[str, object]:
        stderr = clip(bytes(kept["stderr"][:cap]), cap, seen["stderr"])
        return {
            "stdout": clip(bytes(kept["stdout"][:cap]), cap, seen["stdout"]),
            "stderr": "\n".join([stderr, *notes]) if stderr else "\n".join(notes),
            "exit_code": exit_code,
        }

    return fit(build, STREAM_CAP, OUTPUT_LIMIT)


def _killed(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"[killed by signal {number}]"
    hint = _HINTS.get(signal.Signals(number))
    return f"[killed by {name}{f': {hint}' if hint else ''}]"


def _collect(program: subprocess.Popen[bytes]) -> tuple[dict[str, bytearray], dict[str, int], bool]:
    """Reads both pipes to the end (or a little after the program's exit), keeping the
    first STREAM_CAP bytes of each and counting the rest."""
    assert program.stdout is not None and program.stderr is not None  # both are pipes
    selector = selectors.DefaultSelector()
    selector.register(program.stdout, selectors.EVENT_READ, "stdout")
    selector.register(program.stderr, selectors.EVENT_READ, "stderr")
    kept = {"stdout": bytearray(), "stderr": bytearray()}
    seen = {"stdout": 0, "stderr": 0}
    stop_at: float | None = None
    while selector.get_map():
        if stop_at is None and program.poll() is not None:
            stop_at = time.monotonic() + AFTER_EXIT_SECONDS
        wait = 0.05 if stop_at is None else stop_at - time.monotonic()
        if wait <= 0:
            break
        for key, _ in selector.select(wait):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            seen[key.data] += len(chunk)
            kept[key.data] += chunk[: max(0, STREAM_CAP - len(kept[key.data]))]
        if sum(seen.values()) > FLOOD_BYTES:
            program.kill()
            return kept, seen, True
    return kept, seen, False


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from pydantic import BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        code: str = Field(
            min_length=1,
            max_length=MAX_CODE_CHARS,
            description="A complete Python 3 program; print() what you want to see.",
        )

    TOOL = Tool(
        name="python",
        description=(
            "Runs a Python 3 program (standard library only, no network) in an isolated sandbox and returns "
            'JSON {"stdout", "stderr", "exit_code"}, each stream cut at 16 KiB. The user\'s files are readable '
            "at /workspace (the working directory, read-only); /tmp is writable scratch, gone after the call. "
            "Limits: 10 s, 5 s of CPU, {memory}."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="idempotent",
        pool="sandbox",
        timeout_seconds=10.0,
        limits=Limits(
            cpu_seconds=5,
            memory_mib=512,
            call_memory_mib=1024,
            max_output_bytes=OUTPUT_LIMIT,
            max_processes=32,
            tmp_mib=64,
        ),
        workspace="read",
    )
