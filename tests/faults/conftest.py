"""Fault injection: each test gets its own stack of real processes and breaks one part."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Proc, Stack

pytestmark = pytest.mark.faults


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[Stack]:
    """Two reasoners, a slow-streaming model: wide windows to kill things in."""
    s = Stack(tmp_path, OFFLINE_MODEL_CHUNK_DELAY_MS="30", SHUTDOWN_GRACE_SECONDS="10")
    try:
        s.start_all()
        s.wait_ready(s.start("reasoner", port=_spare_port()))
        yield s
    finally:
        s.close()


def _spare_port() -> int:
    from tests.stack import free_port

    return free_port()


def metric(proc: Proc, name: str) -> float:
    """The sum of a metric's samples on one process (0 when it has none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def holder(stack: Stack, service: str, in_flight_metric: str) -> Proc:
    """The live process of `service` that is working on something right now."""
    for proc in stack.procs:
        if proc.name == service and proc.alive() and metric(proc, in_flight_metric) > 0:
            return proc
    raise AssertionError(f"no {service} is working on anything")
