"""The `make run` supervisor's pure parts (scripts/run_all.py): its restart pause, and
which broker user it gives each service."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

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


def test_make_run_uses_its_broker_users_only_for_their_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` leaves data/broker-users.env, users of its namespace: a supervisor run on
    another namespace (a test's) must not give them to its services, whose every queue
    would then be refused (ACCESS_REFUSED, a crash loop)."""
    users = tmp_path / "broker-users.env"
    users.write_text(
        "# broker users of namespace agentry (scripts/broker-users.py); secret\n"
        "AGENTRY_NAMESPACE=agentry\n"
        "AMQP_URL_TOOL_RUNNER=amqp://agentry-tool-runner:pw@127.0.0.1:5672/\n"
    )
    monkeypatch.delenv("AGENTRY_NAMESPACE", raising=False)
    assert run_all.own_broker_user("tool-runner", users) == {
        "AMQP_URL": "amqp://agentry-tool-runner:pw@127.0.0.1:5672/"
    }
    assert run_all.own_broker_user("gateway", users) == {}  # none made for it
    monkeypatch.setenv("AGENTRY_NAMESPACE", "t0123")
    assert run_all.own_broker_user("tool-runner", users) == {}
    # A file written before it named its namespace on a line of its own: the header says it.
    users.write_text("\n".join(line for line in users.read_text().splitlines() if "=agentry" not in line) + "\n")
    assert run_all.own_broker_user("tool-runner", users) == {}
    monkeypatch.setenv("AGENTRY_NAMESPACE", "agentry")
    assert run_all.own_broker_user("tool-runner", users) != {}
