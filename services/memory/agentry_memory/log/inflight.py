"""Counts handlers running, so a stop can let them finish before the bus closes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def wrap(self, handler: Callable[[T], Awaitable[U]]) -> Callable[[T], Awaitable[U]]:
        async def counted(arg: T) -> U:
            self._count += 1
            self._idle.clear()
            try:
                return await handler(arg)
            finally:
                self._count -= 1
                if self._count == 0:
                    self._idle.set()

        return counted

    async def wait_idle(self) -> None:
        await self._idle.wait()
