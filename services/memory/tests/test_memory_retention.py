"""FrameSweeper: what it deletes (by its clock), and that a failing sweep does not stop it."""

from __future__ import annotations

import time
from typing import Any, cast

from agentry_memory.main import retention_hours
from agentry_memory.store import Store
from agentry_memory.upkeep.retention import DEFAULT_RETENTION_HOURS, FrameSweeper
from agentry_shared.contracts.scope import Scope
from agentry_shared.settings import MemorySettings
from agentry_shared.testing import until


async def test_frames_older_than_the_retention_are_swept(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    for event_id in ("e1", "e2"):
        await store.append_frame(scope, event_id, {"type": "turn.started"})
    now = time.time()
    sweeper = FrameSweeper(store, retention_hours=1, clock=lambda: now)
    assert await sweeper.sweep_once() == 0  # seconds old, well within the hour
    sweeper.clock = lambda: now + 3601
    assert await sweeper.sweep_once() == 1  # the conversation's last frame stays
    assert [f["seq"] for f in await store.frames_after(scope, 0, 10)] == [2]


class FailingStore:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def sweep_frames(self, older_than: float) -> int:
        self.calls.append(older_than)
        if len(self.calls) == 1:
            raise OSError("database is locked")
        return 0


async def test_the_sweeper_runs_periodically_and_survives_a_failure(caplog: Any) -> None:
    store = FailingStore()
    sweeper = FrameSweeper(cast(Store, store), retention_hours=2, interval=0.01, clock=lambda: 10_000.0)
    sweeper.start()
    await until(lambda: len(store.calls) >= 3, "a third sweep after the failed first")
    await sweeper.stop()
    assert len(store.calls) >= 3 and set(store.calls) == {10_000.0 - 7200}
    assert "frame sweep failed" in caplog.text


class WithRetention(MemorySettings):
    memory_frame_retention_hours: float = 6.0


def test_retention_comes_from_the_settings_once_they_carry_it() -> None:
    assert retention_hours(WithRetention()) == 6.0
    plain = MemorySettings()
    if not hasattr(plain, "memory_frame_retention_hours"):  # not in the shared settings yet
        assert retention_hours(plain) == DEFAULT_RETENTION_HOURS == 24.0
