"""One socket's bounded send queue, with the per-conversation seq dedupe.

Live frames are offered from the broker consumer, which serves every socket of the
process: offering never waits, so one slow client can only fill its own queue. A full
queue is reported to the caller (who closes that socket) instead of blocking or dropping
silently, because a client that silently missed frames would show a corrupt conversation.

Replays (resume, catch-up) may be thousands of frames: they wait for `room()`, which is
half the queue, so a replay paces itself to the client and always leaves the other half
to live frames (a replay filling the queue would get the socket closed by the next one).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

Outgoing = tuple[str, bytes]  # (frame type, UTF-8 JSON as it goes on the wire)


class Offer(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"  # seq not above the last one queued for the conversation
    OVERFLOW = "overflow"  # queue full: the socket must be closed


class Outbox:
    def __init__(self, capacity: int) -> None:
        self._items: deque[Outgoing] = deque()
        self._capacity = capacity
        self._low_water = capacity // 2
        self._nonempty = asyncio.Event()
        self._room = asyncio.Event()  # set while at most half full
        self._room.set()
        self._last_seq: dict[str, int] = {}

    def offer_frame(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> Offer:
        """Queue a conversation frame unless it is a redelivery of one already queued.

        Dedupe is by seq at enqueue time: the queue is FIFO, so what was queued is what is
        sent, and seq strictly increases per conversation on this socket.
        """
        last = self._last_seq.get(conversation_id)
        if last is not None and seq <= last:
            return Offer.DUPLICATE
        offer = self._put((frame_type, body))
        if offer is Offer.QUEUED:
            self._last_seq[conversation_id] = seq
        return offer

    def offer_error(self, body: bytes) -> Offer:
        return self._put(("error", body))

    def offer_reply(self, frame_type: str, body: bytes) -> Offer:
        """A frame that answers this socket only (no conversation, no seq: never deduped)."""
        return self._put((frame_type, body))

    def last_seq(self, conversation_id: str) -> int | None:
        """The highest seq of the conversation queued so far (None: none, and none expected)."""
        return self._last_seq.get(conversation_id)

    def reset(self, conversation_id: str, seq: int | None) -> None:
        """Make `seq` the conversation's last queued one: a resume restarts there."""
        if seq is None:
            self._last_seq.pop(conversation_id, None)
        else:
            self._last_seq[conversation_id] = seq

    @property
    def has_room(self) -> bool:
        """At most half full: a replay may add a frame."""
        return self._room.is_set()

    async def room(self) -> None:
        """Return once the queue is at most half full."""
        await self._room.wait()

    async def get(self) -> Outgoing:
        while not self._items:
            await self._nonempty.wait()
        item = self._items.popleft()
        if not self._items:
            self._nonempty.clear()
        if len(self._items) <= self._low_water:
            self._room.set()
        return item

    def _put(self, item: Outgoing) -> Offer:
        if len(self._items) >= self._capacity:
            return Offer.OVERFLOW
        self._items.append(item)
        self._nonempty.set()
        if len(self._items) > self._low_water:
            self._room.clear()
        return Offer.QUEUED

    def __len__(self) -> int:
        return len(self._items)
