"""One socket's bounded send queue, with the per-conversation seq dedupe.

Frames are offered from the broker consumer, which serves every socket of the process:
offering never waits, so one slow client can only fill its own queue. A full queue is
reported to the caller (who closes that socket) instead of blocking or dropping silently,
because a client that silently missed frames would show a corrupt conversation.
"""

from __future__ import annotations

import asyncio
import enum

Outgoing = tuple[str, bytes]  # (frame type, UTF-8 JSON as it goes on the wire)


class Offer(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"  # seq not above the last one queued for the conversation
    OVERFLOW = "overflow"  # queue full: the socket must be closed


class Outbox:
    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(capacity)
        self._last_seq: dict[str, int] = {}

    def offer_frame(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> Offer:
        """Queue a conversation frame unless it is a redelivery of one already queued.

        Dedupe is by seq at enqueue time: the queue is FIFO, so what was queued is what is
        sent, and seq strictly increases per conversation on this socket.
        """
        last = self._last_seq.get(conversation_id)
        if last is not None and seq <= last:
            return Offer.DUPLICATE
        try:
            self._queue.put_nowait((frame_type, body))
        except asyncio.QueueFull:
            return Offer.OVERFLOW
        self._last_seq[conversation_id] = seq
        return Offer.QUEUED

    def offer_error(self, body: bytes) -> Offer:
        try:
            self._queue.put_nowait(("error", body))
        except asyncio.QueueFull:
            return Offer.OVERFLOW
        return Offer.QUEUED

    async def get(self) -> Outgoing:
        return await self._queue.get()

    def __len__(self) -> int:
        return self._queue.qsize()
