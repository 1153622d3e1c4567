"""Retention: frames stay replayable for a while, reasoning stays auditable for longer, then
a periodic sweep drops them.

Frames exist so a client can resume after a disconnect; nobody resumes a day later, and
the log would otherwise grow forever. The turns and messages (the conversation itself)
are kept. A client that asks for frames older than the retention gets the oldest kept
ones, with a seq gap before the first: it must treat the conversation as reset.
Reasoning traces are for audits; they go after `reasoning_retention_days` (MongoDB's TTL
index removes them too; the sweep makes the retention exact and backend-independent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agentry_memory.metrics import FRAMES_SWEPT, REASONING_SWEPT
from agentry_memory.store import Store

log = logging.getLogger(__name__)

# Until MemorySettings carries MEMORY_FRAME_RETENTION_HOURS (main reads it when it does).
DEFAULT_RETENTION_HOURS = 24.0
SWEEP_INTERVAL_SECONDS = 300.0


class FrameSweeper:
    def __init__(
        self,
        store: Store,
        retention_hours: float = DEFAULT_RETENTION_HOURS,
        *,
        reasoning_retention_days: float | None = None,
        interval: float = SWEEP_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention_seconds = retention_hours * 3600.0
        self.reasoning_seconds = None if reasoning_retention_days is None else reasoning_retention_days * 86400.0
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> int:
        """Frames deleted (and, when configured, expired reasoning too)."""
        now = self.clock()
        deleted = await self.store.sweep_frames(now - self.retention_seconds)
        if deleted:
            FRAMES_SWEPT.inc(deleted)
            log.info("expired frames deleted", extra={"frames": deleted})
        if self.reasoning_seconds is not None:
            steps = await self.store.sweep_reasoning(now - self.reasoning_seconds)
            if steps:
                REASONING_SWEPT.inc(steps)
                log.info("expired reasoning deleted", extra={"steps": steps})
        return deleted

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="frame-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("frame sweep failed; trying again next time")
            await asyncio.sleep(self.interval)
