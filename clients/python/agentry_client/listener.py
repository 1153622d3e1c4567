"""A subscriber's view of the frames a client receives: every frame, in the order read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from agentry_client.errors import AgentryError
from agentry_client.frames import Frame


@dataclass(frozen=True)
class Dropped:
    """The socket dropped; the client reconnected and resumed what it follows."""


@dataclass(frozen=True)
class Ended:
    """The client stopped reading for good: closed by us (`error` None) or gave up."""

    error: AgentryError | None = None


Item = Frame | Dropped | Ended


class Listener:
    """Frames fan out to every listener; each has its own unbounded queue, so a slow reader
    never makes another miss a frame. Close it (or use it as a context manager) when done."""

    def __init__(self, on_close: Callable[[Listener], None] | None = None) -> None:
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._detach = on_close

    def put(self, item: Item) -> None:
        self._queue.put_nowait(item)

    async def get(self) -> Item:
        return await self._queue.get()

    def close(self) -> None:
        if self._detach is not None:
            self._detach(self)
            self._detach = None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
