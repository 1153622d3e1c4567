"""Lines typed by the user, read without blocking the event loop.

A daemon thread reads stdin (a terminal, a pipe or a file alike) and hands each line to
the loop, so a `/cancel` typed while a turn streams is seen at once; `None` is end of input.
Bytes the terminal's encoding cannot decode come as lone surrogates (see `decodable`).
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from typing import TextIO


class Lines:
    def __init__(self, source: TextIO = sys.stdin) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.source = source
        if isinstance(source, io.TextIOWrapper):
            # Bytes the encoding cannot decode arrive as lone surrogates (the chat refuses such a
            # line) instead of raising here, which ended this reader and left the chat waiting.
            source.reconfigure(errors="surrogateescape")
        threading.Thread(target=self._read, name="agentry-stdin", daemon=True).start()

    def _read(self) -> None:
        for line in self.source:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line.rstrip("\n"))
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def get(self) -> str | None:
        return await self._queue.get()


def decodable(line: str) -> bool:
    """False for a line holding bytes the input's encoding could not decode (lone surrogates)."""
    return not any("\udc80" <= char <= "\udcff" for char in line)
