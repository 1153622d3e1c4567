"""The conversation log's frames on SQLite: sequencing, replay and expiry."""

from __future__ import annotations

import json
import time
from typing import Any

from agentry_shared.contracts.scope import Scope

from agentry_memory.store.records import EncodedFrame
from agentry_memory.store.sqlite.base import SqliteBase

# Conversations whose expired frames one sweep transaction deletes: small enough that the
# log and the RPCs (on the same worker thread) wait at most a moment behind a sweep.
SWEEP_BATCH = 200


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
        with self._tx():  # one transaction (or one savepoint of a group); each frame nests in it
            grouping, self._grouping = self._grouping, True
            try:
                return [self._append_frame(scope, event_id, frame) for event_id, frame in frames]
            finally:
                self._grouping = grouping

    def _append_frame(self, scope: Scope, event_id: str, frame: EncodedFrame) -> tuple[int, bool]:
        now = time.time()
        with self._tx() as db:
            conversation = self._owned(db, scope)
            row = db.execute(
                "SELECT seq FROM frames WHERE conversation = ? AND event_id = ?", (conversation, event_id)
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            # A counter, not MAX(seq) + 1: after every frame of a conversation expired, seq
            # must still go on from where it was (gateways and clients drop seqs seen before).
            (seq,) = db.execute(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (conversation,)
            ).fetchone()
            db.execute(
                "INSERT INTO frames (conversation, seq, event_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (conversation, seq, event_id, frame.with_seq(seq).decode(), now),
            )
            state, turn_id = frame.final_state, frame.turn_id
            if state is not None and turn_id:
                db.execute(
                    "UPDATE turns SET state = ?, finished_at = ?, finished_by = ? "
                    "WHERE conversation = ? AND turn_id = ? AND state NOT IN ('completed', 'failed', 'cancelled')",
                    (state, now, event_id, conversation, turn_id),
                )
            return int(seq), True

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return await self._run(self._frames_after, scope, after_seq, limit)

    def _frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            rows = db.execute(
                "SELECT body FROM frames WHERE conversation = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conversation, after_seq, limit),
            ).fetchall()
        return [json.loads(body) for (body,) in rows]

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
