"""One turn watched for an HTTP request: the conversation's frames from the fan-out, the
turn's picked out in order, and the turn cancelled if the request goes away first.

A `FrameSink` of the shared fan-out, like a socket: subscribed before the turn is
published, so not even its first frame can be missed. Frames come as the broker delivers
them; a redelivered one (a `seq` already seen) is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentry_gateway.fanout import Fanout
from agentry_gateway.inbound import UNAVAILABLE, Rejected
from agentry_gateway.memory_client import MemoryClient

log = logging.getLogger(__name__)

Liveness = Callable[[], bool]
TERMINAL = frozenset({"turn.completed", "turn.failed"})


class Idle:
    """No frame for a while (the caller may send a keep-alive)."""


IDLE = Idle()


class TurnWatch:
    def __init__(self, fanout: Fanout, conversation_id: str, *, max_frames: int, idle_seconds: float) -> None:
        self._fanout = fanout
        self.conversation_id = conversation_id
        self._frames: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(max_frames)
        self._idle = idle_seconds
        self._last_seq = 0
        self._overflowed = False
        self._subscribed = False

    def deliver(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> None:
        try:
            self._frames.put_nowait((seq, body))
        except asyncio.QueueFull:
            self._overflowed = True  # the reader is far behind: it ends the request

    async def subscribe(self) -> None:
        try:
            await self._fanout.subscribe(self.conversation_id, self)
        except Exception as exc:
            log.warning("subscribe failed", extra={"conversation_id": self.conversation_id}, exc_info=True)
            raise Rejected(UNAVAILABLE, "the broker is unavailable; retry") from exc
        self._subscribed = True

    async def close(self) -> None:
        if self._subscribed:
            self._subscribed = False
            await self._fanout.unsubscribe(self.conversation_id, self)

    async def frames(self, turn_id: str, bus_alive: Liveness) -> AsyncIterator[dict[str, Any] | Idle]:
        """The turn's frames up to and with its end; IDLE after each quiet interval.

        Raises `Rejected(unavailable)` if the broker connection is lost meanwhile (frames
        published while it is away never reach this gateway) or the reader fell behind."""
        while True:
            try:
                seq, body = await asyncio.wait_for(self._frames.get(), self._idle)
            except TimeoutError:
                if not bus_alive():
                    raise Rejected(UNAVAILABLE, "the gateway lost the broker during the turn") from None
                yield IDLE
                continue
            if self._overflowed:
                raise Rejected(UNAVAILABLE, "the request fell too far behind the turn's frames")
            if seq <= self._last_seq:
                continue
            self._last_seq = seq
            frame: dict[str, Any] = json.loads(body)
            if frame.get("turn_id") != turn_id:
                continue  # an earlier turn of the conversation, still running
            yield frame
            if frame.get("type") in TERMINAL:
                return


class Canceller:
    """Cancels turns whose request went away, in tasks that outlive the request's."""

    def __init__(self, memory: MemoryClient) -> None:
        self._memory = memory
        self._tasks: set[asyncio.Task[None]] = set()

    def cancel(self, tenant_id: str, user_id: str, turn_id: str) -> None:
        task = asyncio.create_task(self._cancel(tenant_id, user_id, turn_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, tenant_id: str, user_id: str, turn_id: str) -> None:
        try:
            await self._memory.cancel(tenant_id, user_id, turn_id)
            log.info("request gone: turn cancelled", extra={"turn_id": turn_id})
        except Rejected as exc:
            log.warning("request gone: the turn could not be cancelled", extra={"turn_id": turn_id, "code": exc.code})

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
