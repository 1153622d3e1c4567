"""The conversation log's frames on MongoDB: sequencing, replay and expiry.

A frame's seq is the conversation's highest kept seq plus one, claimed by inserting under
the unique (conversation, seq) index: a concurrent appender that lost the race reads
again, so seqs never have a gap, even after a crash (nothing is counted before the frame
exists). This works because the retention sweep never deletes a conversation's last
frame: the highest kept seq is always the last one given out. Within a process, appends
to one conversation take turns (a lock), so the race is only ever between processes,
which the partitioned log makes rare (one active consumer per partition).
"""

from __future__ import annotations

import time
from typing import Any

from agentry_shared.contracts.scope import Scope
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from agentry_memory.store.mongo.base import MongoBase, conversation_filter
from agentry_memory.store.records import FINISHED, EncodedFrame, replayed

SEQ_ATTEMPTS = 20


class MongoFrames(MongoBase):
    async def append_frame(self, scope: Scope, event_id: str, frame: EncodedFrame | dict[str, Any]) -> tuple[int, bool]:
        """The turn a final frame ends is updated after the frame is stored, on a redelivery
        too (conditionally, so only the first final frame counts): a crash between the two
        writes is repaired when the entry comes back."""
        encoded = frame if isinstance(frame, EncodedFrame) else EncodedFrame.of(frame)
        await self._owned(scope)
        async with self._appending.hold(scope.conversation_id):
            seq, new = await self._insert_frame(scope, event_id, encoded)
        state, turn_id = encoded.final_state, encoded.turn_id
        if state is not None and turn_id:
            await self._c("turns").update_one(
                {"_id": turn_id, **conversation_filter(scope), "state": {"$nin": list(FINISHED)}},
                {"$set": {"state": state, "finished_at": time.time(), "finished_by": event_id}},
            )
        return seq, new

    async def append_frames(
        self, scope: Scope, frames: list[tuple[str, EncodedFrame | dict[str, Any]]]
    ) -> list[tuple[int, bool]]:
        return [await self.append_frame(scope, event_id, frame) for event_id, frame in frames]

    async def _insert_frame(self, scope: Scope, event_id: str, frame: EncodedFrame) -> tuple[int, bool]:
        frames = self._c("frames")
        where = conversation_filter(scope)
        for _ in range(SEQ_ATTEMPTS):
            existing = await frames.find_one({**where, "event_id": event_id}, {"seq": 1})
            if existing is not None:
                return int(existing["seq"]), False
            last = await frames.find_one(where, {"seq": 1}, sort=[("seq", DESCENDING)])
            seq = (int(last["seq"]) if last else 0) + 1
            body = frame.with_seq(seq).decode()
            try:
                await frames.insert_one(
                    {**where, "seq": seq, "event_id": event_id, "body": body, "created_at": time.time()}
                )
            except DuplicateKeyError:
                continue  # that seq (or this event) was taken meanwhile: look again
            return seq, True
        raise RuntimeError(f"no free seq after {SEQ_ATTEMPTS} attempts")

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        await self._owned(scope)
        where = {**conversation_filter(scope), "seq": {"$gt": after_seq}}
        cursor = self._c("frames").find(where, {"body": 1, "created_at": 1})
        now = time.time()
        return [replayed(doc["body"], doc["created_at"], now) async for doc in cursor.sort("seq", 1).limit(limit)]

    async def sweep_frames(self, older_than: float) -> int:
        """Per conversation with expired frames: delete up to the newest expired seq (a
        prefix, whatever the clock did), never the last frame."""
        frames = self._c("frames")
        groups = await frames.aggregate(
            [
                {"$match": {"created_at": {"$lt": older_than}}},
                {
                    "$group": {
                        "_id": {
                            "tenant_id": "$tenant_id",
                            "user_id": "$user_id",
                            "conversation_id": "$conversation_id",
                        },
                        "newest": {"$max": "$seq"},
                    }
                },
            ]
        )
        deleted = 0
        async for group in groups:
            where = dict(group["_id"])
            last = await frames.find_one(where, {"seq": 1}, sort=[("seq", DESCENDING)])
            cut = min(int(group["newest"]), int(last["seq"]) - 1) if last else 0
            if cut > 0:
                deleted += (await frames.delete_many({**where, "seq": {"$lte": cut}})).deleted_count
        return deleted
