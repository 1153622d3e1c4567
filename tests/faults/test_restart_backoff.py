"""The `make run` supervisor's restart pause (scripts/run_all.py), as a pure function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _run_all() -> Any:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "scripts" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_all", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run_all = _run_all()


def test_a_crash_loop_backs_off_up_to_the_cap() -> None:
    crashes, pauses = 0, []
    for _ in range(10):
        pause, crashes = run_all.restart_pause(crashes, uptime=1.0)
        pauses.append(pause)
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0]
    assert pauses[-1] == run_all.MAX_PAUSE_S and crashes == 10


def test_the_pause_decays_once_a_service_stayed_up() -> None:
    """Ten crashes spread over time must not make every later restart wait 30 s."""
    crashes = 10
    pause, crashes = run_all.restart_pause(crashes, uptime=run_all.STABLE_S)
    assert (pause, crashes) == (0.5, 1)
    # A quick crash right after that counts from there, not from the old ten.
    pause, crashes = run_all.restart_pause(crashes, uptime=2.0)
    assert (pause, crashes) == (1.0, 2)
