"""Coalesces answer tokens into small frames: fewer frames, still a live stream.

The first piece goes out at once (time to first token matters most); later pieces wait
until the interval has passed since the last frame or `max_chars` are buffered. The
interval starts at `interval` and doubles with each frame up to `max_interval`, and the
character bound grows with it: the start of an answer streams finely, the rest in fewer,
larger frames, however fast the model (each frame of a turn is a log entry, a commit and
a fan-out; a 64-token answer is a handful of frames, not one per token). A pending
remainder is flushed by a timer so a pause in the model never holds text back. The last
piece, sent by `close`, is marked so: the frame that follows it at once (the turn's end)
can share its log entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class DeltaCoalescer:
    def __init__(
        self,
        send: Callable[[str, bool], Awaitable[None]],
        interval_s: float,
        max_chars: int,
        max_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval = interval_s
        self._max_interval = max(interval_s, interval_s if max_interval_s is None else max_interval_s)
        self._max_chars = max_chars
        self._chars_per_s = max_chars / interval_s if interval_s > 0 else None
        self._clock = clock
        self._frames = 0
        self._buffer: list[str] = []
        self._size = 0
        self._last_sent = float("-inf")  # the first piece is due at once
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, text: str) -> None:
        self._buffer.append(text)
        self._size += len(text)
        due = self._clock() - self._last_sent >= self._interval
        if due or self._size >= self._max_chars:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._interval)
        except asyncio.CancelledError:
            return
        self._timer = None  # from here on close() waits for this flush through the lock
        await self.flush()

    async def flush(self, last: bool = False) -> None:
        async with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            self._last_sent = self._clock()
            self._frames += 1
            if self._frames > 1:  # the first frame goes at once; the interval grows from the second
                self._interval = min(self._interval * 2, self._max_interval)
                if self._chars_per_s is not None:
                    self._max_chars = max(self._max_chars, int(self._chars_per_s * self._interval))
            await self._send(text, last)

    async def discard(self) -> None:
        """Drop what is buffered and not yet sent (the answer is being taken back)."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        async with self._lock:
            self._buffer.clear()
            self._size = 0

    async def close(self) -> None:
        """Flush what is left as the last piece and stop the timer; call at the end of
        the model's stream, before the turn's last frame."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        await self.flush(last=True)
