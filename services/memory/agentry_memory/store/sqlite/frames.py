"""The conversation log's frames on SQLite: sequencing, replay and expiry."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from agentry_shared.contracts.scope import Scope

from agentry_memory.store.records import EncodedFrame, replayed
from agentry_memory.store.sqlite.base import SqliteBase

# Conversations whose expired frames one sweep transaction deletes: small enough that the
# log and the RPCs (on the same worker thread) wait at most a moment behind a sweep.
SWEEP_BATCH = 200
# Event ids looked up per statement (SQLite's bound parameters are limited: 999 before 3.32).
LOOKUP_BATCH = 500


class FrameTables(SqliteBase):
    async def append_frame(self, scope: Scope, event_id: str, frame: EncodedFrame | dict[str, Any]) -> tuple[int, bool]:
        encoded = frame if isinstance(frame, EncodedFrame) else EncodedFrame.of(frame)
        return await self._write(self._append_frame, scope, event_id, encoded)

    async def append_frames(
        self, scope: Scope, frames: list[tuple[str, EncodedFrame | dict[str, Any]]]
    ) -> list[tuple[int, bool]]:
        encoded = [(event_id, f if isinstance(f, EncodedFrame) else EncodedFrame.of(f)) for event_id, f in frames]
        return await self._write(self._append_frames, scope, encoded)

    def _append_frames(self, scope: Scope, frames: list[tuple[str, EncodedFrame]]) -> list[tuple[int, bool]]:
        with self._tx() as db:  # one transaction (or one savepoint of a group)
            return self._sequence(db, self._owned(db, scope), frames)

    def _append_frame(self, scope: Scope, event_id: str, frame: EncodedFrame) -> tuple[int, bool]:
        with self._tx() as db:
            [stored] = self._sequence(db, self._owned(db, scope), [(event_id, frame)])
            return stored

    @staticmethod
    def _sequence(
        db: sqlite3.Connection, conversation: int, frames: list[tuple[str, EncodedFrame]]
    ) -> list[tuple[int, bool]]:
        """The frames' seqs in order: an event seen before keeps its first seq, a new one
        takes the next. A handful of statements however many frames (each statement hands
        the GIL back and forth with the event loop's thread)."""
        seqs = _known_seqs(db, conversation, [event_id for event_id, _ in frames])
        fresh = [event_id for event_id in dict.fromkeys(event_id for event_id, _ in frames) if event_id not in seqs]
        if fresh:
            # A counter, not MAX(seq) + 1: after every frame of a conversation expired, seq
            # must still go on from where it was (gateways and clients drop seqs seen before).
            (last,) = db.execute(
                "UPDATE conversations SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq",
                (len(fresh), conversation),
            ).fetchone()
            seqs.update({event_id: last - len(fresh) + n for n, event_id in enumerate(fresh, start=1)})
        out: list[tuple[int, bool]] = []
        rows: list[tuple[int, int, str, str, float]] = []
        pending, now = set(fresh), time.time()
        for event_id, frame in frames:
            seq, created = seqs[event_id], event_id in pending
            pending.discard(event_id)  # the same id twice in one batch: the second is a repeat
            out.append((seq, created))
            if created:
                rows.append((conversation, seq, event_id, frame.with_seq(seq).decode(), now))
        db.executemany(
            "INSERT INTO frames (conversation, seq, event_id, body, created_at) VALUES (?, ?, ?, ?, ?)", rows
        )
        for (event_id, frame), (_, created) in zip(frames, out, strict=True):
            state = frame.final_state
            if created and state is not None and frame.turn_id:
                db.execute(
                    "UPDATE turns SET state = ?, finished_at = ?, finished_by = ? "
                    "WHERE conversation = ? AND turn_id = ? AND state NOT IN ('completed', 'failed', 'cancelled')",
                    (state, now, event_id, conversation, frame.turn_id),
                )
        return out

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return await self._run(self._frames_after, scope, after_seq, limit)

    def _frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            rows = db.execute(
                "SELECT body, created_at FROM frames WHERE conversation = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conversation, after_seq, limit),
            ).fetchall()
        now = time.time()
        return [replayed(body, created_at, now) for body, created_at in rows]

    async def sweep_frames(self, older_than: float) -> int:
        deleted = 0
        while True:
            count, more = await self._run(self._sweep_batch, older_than)
            deleted += count
            if not more:
                return deleted

    def _sweep_batch(self, older_than: float) -> tuple[int, bool]:
        """Deletes up to each conversation's newest expired seq: a prefix, so no gap is left
        behind even if the clock stepped back and a later seq carries an earlier time. The
        conversation's last frame stays, so a client that is behind always gets one back
        and sees the gap (an empty answer would look like "up to date")."""
        deleted = 0
        with self._tx() as db:
            expired = db.execute(
                "SELECT f.conversation, MAX(f.seq) FROM frames f JOIN conversations c ON c.id = f.conversation "
                "WHERE f.created_at < ? AND f.seq < c.last_seq GROUP BY f.conversation LIMIT ?",
                (older_than, SWEEP_BATCH),
            ).fetchall()
            for conversation, last in expired:
                cursor = db.execute("DELETE FROM frames WHERE conversation = ? AND seq <= ?", (conversation, last))
                deleted += cursor.rowcount
        return deleted, len(expired) == SWEEP_BATCH


def _known_seqs(db: sqlite3.Connection, conversation: int, event_ids: list[str]) -> dict[str, int]:
    known: dict[str, int] = {}
    unique = list(dict.fromkeys(event_ids))
    for start in range(0, len(unique), LOOKUP_BATCH):
        chunk = unique[start : start + LOOKUP_BATCH]
        marks = ",".join("?" * len(chunk))
        known.update(
            db.execute(
                f"SELECT event_id, seq FROM frames WHERE conversation = ? AND event_id IN ({marks})",  # noqa: S608
                (conversation, *chunk),
            ).fetchall()
        )
    return known
