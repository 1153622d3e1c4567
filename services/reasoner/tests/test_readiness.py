"""/readyz of the reasoner: ready only while it takes turns (broker up, not stopping)."""

from __future__ import annotations

import asyncio
from typing import cast

from agentry_reasoner.main import readiness
from agentry_shared.bus import Bus


class StubBus:
    connected = True


def test_ready_with_the_broker_connected() -> None:
    assert readiness(cast(Bus, StubBus()), asyncio.Event())() == (True, "ok")


def test_not_ready_without_the_broker() -> None:
    bus = StubBus()
    bus.connected = False
    assert readiness(cast(Bus, bus), asyncio.Event())() == (False, "broker disconnected")


def test_not_ready_once_stopping() -> None:
    """After SIGTERM the replica drains its turns and takes no new one."""
    stop = asyncio.Event()
    stop.set()
    assert readiness(cast(Bus, StubBus()), stop)() == (False, "stopping")
