"""Merging a replay from memory with the live frames that arrive meanwhile: pure, no I/O.

A socket catches up on a conversation (after `resume`, or after the gateway lost the
broker) by fetching stored frames from memory page by page while the conversation's live
frames keep arriving. Handing live frames straight to the socket would put them ahead of
older replayed ones, and the outbox's seq dedupe would then drop the replayed frames as
"already sent". So while a replay runs, live frames are *held* here and released after
the last page, minus those the replay already covered.

Why this is gap-free: memory stores a frame before it publishes it, and the socket is
subscribed before the first page is fetched. A frame is therefore either stored before a
fetch (and in that page or a later one) or published after the subscription (and held).
Holding is bounded: frames beyond `max_held` are dropped but remembered by seq, and the
replay keeps fetching until it has passed them (memory has them, see above).

Everything handed on has a strictly increasing seq above the starting cursor. A hole in
what is handed on (memory no longer keeps those frames: retention) is reported as a `Gap`
in the output, just before the frame that follows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    seq: int
    type: str
    body: bytes  # UTF-8 JSON as it goes on the wire


@dataclass(frozen=True)
class Gap:
    """Frames `first`..`last` (inclusive) exist no more: they cannot be replayed."""

    first: int
    last: int


Item = Frame | Gap


class Replay:
    """One replay of one conversation on one socket.

    `cursor` is the highest seq given out to be handed on (`rewind` takes back what its job
    could not queue): the replay starts after it (resume: the client's `after_seq`;
    catch-up: the last seq the socket was sent). None means unknown: nothing can be
    fetched, only held frames released.
    """

    def __init__(self, cursor: int | None, *, max_held: int) -> None:
        self.cursor = cursor
        self.fetched = False  # memory had nothing more to give: release the held frames next
        self._max_held = max_held
        self._held: dict[int, Frame] = {}
        self._dropped_max: int | None = None  # highest live seq not held for lack of room

    def hold(self, frame: Frame) -> None:
        """A live frame that arrived during the replay."""
        if self.cursor is not None and frame.seq <= self.cursor:
            return  # already handed on (replayed, or a redelivery)
        if frame.seq in self._held:
            return
        if len(self._held) >= self._max_held:
            self._dropped_max = max(frame.seq, self._dropped_max or frame.seq)
            return
        self._held[frame.seq] = frame

    def accept(self, page: Iterable[Frame], *, full: bool) -> list[Item]:
        """A page fetched from memory after `cursor` (`full`: it had the limit's size).

        Returns what to hand on, in order. Sets `fetched` once memory has nothing more
        that the replay still needs.
        """
        before = self.cursor
        items = self._advance(page)
        progressed = self.cursor != before
        missing_dropped = self._dropped_max is not None and (self.cursor or 0) < self._dropped_max
        # A page without progress ends the replay even if dropped frames are missing: memory
        # does not have them (any more), and asking again would loop forever.
        if not full and not (missing_dropped and progressed):
            self.fetched = True
        return items

    def rewind(self, seq: int | None) -> None:
        """What came out after `seq` never reached the socket (its job was stopped while it
        waited for room): the cursor goes back, and the next fetch brings it again."""
        if seq is not None and self.cursor is not None and seq < self.cursor:
            self.cursor = seq

    def refetch(self) -> None:
        """The live stream had a hole (broker connection lost): fetch again from the cursor."""
        self.fetched = False

    def release(self) -> list[Item]:
        """The held frames not covered by the replay, in order; the holding buffer is emptied.

        Call until it returns nothing: frames held while the previous batch was handed on
        are in the next one.
        """
        held, self._held = self._held, {}
        return self._advance(held.values())

    def _advance(self, frames: Iterable[Frame]) -> list[Item]:
        items: list[Item] = []
        for frame in sorted(frames, key=lambda f: f.seq):
            if self.cursor is not None:
                if frame.seq <= self.cursor:
                    continue  # duplicate
                if frame.seq > self.cursor + 1:
                    items.append(Gap(self.cursor + 1, frame.seq - 1))
            items.append(frame)
            self.cursor = frame.seq
        return items
