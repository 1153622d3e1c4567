"""Test-only tool implementations, loaded by the child through `import_paths`.

Not a test module (no `test_` prefix): the child imports it by name, pytest never does.
"""

from __future__ import annotations

import json
import os
import time


def _fork_sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    return pid


def spawn_and_sleep(pid_file: str, seconds: float) -> str:
    """Leaves a grandchild behind, then outlives its timeout."""
    grandchild = _fork_sleeper()
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {grandchild}")
    time.sleep(seconds)
    return "woke up"


def spawn_and_return(pid_file: str, seconds: float) -> str:
    """Returns at once, leaving a grandchild that holds the result pipe open."""
    grandchild = _fork_sleeper()
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {grandchild}")
    return "returned"


def environment() -> str:
    return json.dumps({"env": dict(os.environ), "cwd": os.getcwd()})


def big_output(size: int) -> str:
    return "x" * size


def flood_fd1(size: int) -> str:
    """Writes straight to fd 1, which the child has pointed at stderr."""
    os.write(1, b"y" * size)
    print("and a print")
    return "clean result"


def burn_cpu() -> str:
    while True:
        pass


def allocate(mib: int) -> str:
    return str(len(bytearray(mib * 1024 * 1024)))


def boom() -> str:
    raise RuntimeError("boom")


def exit_hard() -> str:
    os._exit(3)


def record(path: str, seconds: float = 0.0) -> str:
    """Appends its pid as a line (one line per real execution), then sleeps."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "recorded"


def death_signal() -> str:
    """The signal this process gets when its parent dies (prctl PR_GET_PDEATHSIG)."""
    import ctypes

    value = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)
    return str(value.value)
