"""Conversations, turns and their messages on MongoDB."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import cast

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.memory import TurnState
from agentry_shared.contracts.scope import Scope
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from agentry_memory.context.tokens import message_tokens
from agentry_memory.store.errors import Erased, Forbidden, LimitReached, NotFound
from agentry_memory.store.mongo.base import as_date, conversation_filter, user_filter
from agentry_memory.store.mongo.frames import MongoFrames
from agentry_memory.store.mongo.schema import Document
from agentry_memory.store.records import FINISHED, EncodedFrame, TurnStatus


class MongoTurns(MongoFrames):
    """Built on the frames: a turn's entry sequences its `message.accepted`."""

    async def claim_conversation(self, scope: Scope, *, create: bool = True, max_conversations: int = 0) -> bool:
        """The count and the upsert are two operations: racing creations of one user may
        pass `max_conversations` by a few (it bounds a flood, not an exact quota)."""
        if not create:
            await self._owned(scope)
            return False
        if max_conversations > 0 and await self._c("conversations").find_one({"_id": scope.conversation_id}) is None:
            count = await self._c("conversations").count_documents(user_filter(scope), limit=max_conversations)
            if count >= max_conversations:
                raise LimitReached(f"the user has {count} conversations, the most allowed")
        return await self._create_or_owned(scope, time.time())

    async def abandon_conversation(self, scope: Scope) -> bool:
        """One conditional delete: `turns` (the turn counter) is 0 until a turn is added
        (`_insert_turn` counts before it inserts). A turn whose insert finds the conversation
        deleted between its two steps fails, and its log entry is retried, creating it again."""
        deleted = await self._c("conversations").delete_one(
            {"_id": scope.conversation_id, **user_filter(scope), "turns": 0}
        )
        if deleted.deleted_count == 1:
            return True
        try:
            await self._owned(scope)
        except NotFound:
            return True
        return False

    async def add_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> int:
        async with self._unless_erased(scope, accepted_at):
            index, _ = await self._insert_turn(scope, turn_id, user_message)
        return index

    async def add_and_begin_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> bool:
        async with self._unless_erased(scope, accepted_at):
            return await self._add_and_begin_turn(scope, turn_id, user_message)

    async def _add_and_begin_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> bool:
        """Three operations, each safe to repeat: the begin only changes a turn nobody has
        begun (attempts 0, `queued`), so a racing `BeginTurn` or a second ingest wins or
        loses cleanly; the earlier turns checked here can only finish meanwhile (a queued
        or running one makes this answer False), never start."""
        index, created = await self._insert_turn(scope, turn_id, user_message)
        if not created:
            return False
        unfinished = await self._c("turns").find_one(
            {**conversation_filter(scope), "turn_index": {"$lt": index}, "state": {"$in": ["queued", "running"]}},
            projection={"_id": 1},
        )
        if unfinished is not None:
            return False
        begun = await self._c("turns").update_one(
            {"_id": turn_id, "attempts": 0, "state": "queued", "cancel_requested_at": None},
            {"$set": {"attempts": 1, "state": "running"}},
        )
        return begun.modified_count == 1

    async def enter_turn(
        self,
        scope: Scope,
        turn_id: str,
        user_message: ChatMessage,
        accepted: tuple[str, EncodedFrame],
        *,
        begin: bool,
        accepted_at: float | None = None,
    ) -> tuple[bool, tuple[int, bool]]:
        """The turn, then its frame: a crash between them is repaired by the redelivery
        (the turn is seen again, the frame stored then)."""
        async with self._unless_erased(scope, accepted_at):
            if begin:
                begun = await self._add_and_begin_turn(scope, turn_id, user_message)
            else:
                await self._insert_turn(scope, turn_id, user_message)
                begun = False
            [stored] = await self.append_frames(scope, [accepted])
        return begun, stored

    @contextlib.asynccontextmanager
    async def _unless_erased(self, scope: Scope, accepted_at: float | None) -> AsyncIterator[None]:
        """`Erased`, with nothing kept, if scope's user was erased at or after `accepted_at`.

        Checked before the writes (the usual refusal: nothing written) and again after
        them, because no transaction holds the check and the writes together: an erasure
        records itself before it deletes, so either it was recorded before the second
        check (seen here: what was written is deleted again) or after it, and then its
        deletes come after these writes and take them."""
        await self._refuse_if_erased(scope, accepted_at)
        yield
        try:
            await self._refuse_if_erased(scope, accepted_at)
        except Erased:
            where = conversation_filter(scope)
            for name in ("frames", "messages", "turns", "summaries", "approvals"):
                await self._c(name).delete_many(where)
            await self._c("conversations").delete_one({"_id": scope.conversation_id, **user_filter(scope)})
            raise

    async def _insert_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> tuple[int, bool]:
        """(turn_index, whether this call created the turn). The turn_index comes from the
        conversation's `$inc` counter; a crash after it leaves a gap in the indexes
        (harmless: only their order matters). The user message is upserted on every call,
        so a redelivery after a crash between the two writes completes the turn."""
        now = time.time()
        turns = self._c("turns")
        turn = await turns.find_one({"_id": turn_id})
        if turn is not None and turn["conversation_id"] != scope.conversation_id:
            raise Forbidden(f"turn {turn_id} belongs to another conversation")
        await self._create_or_owned(scope, now)
        created = False
        if turn is None:
            counter = await self._c("conversations").find_one_and_update(
                {"_id": scope.conversation_id}, {"$inc": {"turns": 1}}, return_document=ReturnDocument.AFTER
            )
            assert counter is not None
            turn = {
                "_id": turn_id,
                **conversation_filter(scope),
                "turn_index": int(counter["turns"]),
                "created_at": now,
                "state": "queued",
                "attempts": 0,
                "cancel_requested_at": None,
                "finished_at": None,
                "finished_by": None,
            }
            try:
                await turns.insert_one(turn)
                created = True
            except DuplicateKeyError:  # the same turn ingested at once elsewhere
                turn = await turns.find_one({"_id": turn_id})
                assert turn is not None
        if turn["conversation_id"] != scope.conversation_id or turn["user_id"] != scope.user_id:
            raise Forbidden(f"turn {turn_id} belongs to another conversation")
        index = int(turn["turn_index"])
        await self._c("messages").update_one(
            {**conversation_filter(scope), "turn_index": index, "position": 0},
            {"$setOnInsert": _message_fields(user_message)},
            upsert=True,
        )
        return index, created

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        """Upserts positions 1..n, then drops the ones above n: a crash between the two is
        repaired by the reasoner's next checkpoint, which is always the full list."""
        turn = await self._turn(scope, turn_id)
        where = {**conversation_filter(scope), "turn_index": turn["turn_index"]}
        if messages:
            await self._c("messages").bulk_write(
                [
                    UpdateOne({**where, "position": position}, {"$set": _message_fields(message)}, upsert=True)
                    for position, message in enumerate(messages, start=1)
                ],
                ordered=False,
            )
        await self._c("messages").delete_many({**where, "position": {"$gt": len(messages)}})

    async def begin_turn(self, scope: Scope, turn_id: str) -> tuple[int, TurnState]:
        await self._turn(scope, turn_id)
        turn = await self._c("turns").find_one_and_update(
            {"_id": turn_id, **conversation_filter(scope)},
            {"$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        assert turn is not None
        attempts, state = int(turn["attempts"]), cast(TurnState, turn["state"])
        if state in FINISHED:
            return attempts, state
        if turn["cancel_requested_at"] is not None:
            return attempts, "cancelled"
        # Conditional: a final frame sequenced meanwhile keeps its state.
        result = await self._c("turns").update_one(
            {"_id": turn_id, "state": {"$nin": list(FINISHED)}}, {"$set": {"state": "running"}}
        )
        if result.matched_count == 0:
            finished = await self._c("turns").find_one({"_id": turn_id})
            assert finished is not None
            return attempts, cast(TurnState, finished["state"])
        return attempts, "running"

    async def turn_status(self, scope: Scope, turn_id: str) -> TurnStatus:
        return _status(await self._turn(scope, turn_id))

    async def earlier_turn_running(self, scope: Scope, turn_id: str) -> bool:
        turn = await self._turn(scope, turn_id)
        earlier = await self._c("turns").find_one(
            {**conversation_filter(scope), "turn_index": {"$lt": turn["turn_index"]}, "state": "running"},
            projection={"_id": 1},
        )
        return earlier is not None

    async def cancel_turn(self, tenant_id: str, user_id: str, turn_id: str) -> TurnStatus:
        turn = await self._c("turns").find_one({"_id": turn_id})
        if turn is None:
            raise NotFound(f"no turn {turn_id}")
        if (turn["tenant_id"], turn["user_id"]) != (tenant_id, user_id):
            raise Forbidden(f"turn {turn_id} belongs to someone else")
        before = _status(turn)
        if before.state not in FINISHED:
            await self._c("turns").update_one(
                {"_id": turn_id, "cancel_requested_at": None}, {"$set": {"cancel_requested_at": time.time()}}
            )
        return before

    async def record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        await self._turn(scope, turn_id)
        now = time.time()
        await self._c("reasoning").update_one(
            {**user_filter(scope), "turn_id": turn_id, "step": step},
            {
                "$set": {"text": text},
                "$setOnInsert": {"conversation_id": scope.conversation_id, "recorded_at": now, "created": as_date(now)},
            },
            upsert=True,
        )

    async def reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        await self._turn(scope, turn_id)
        cursor = self._c("reasoning").find({**user_filter(scope), "turn_id": turn_id}).sort("step", 1)
        return [str(doc["text"]) async for doc in cursor]


def _message_fields(message: ChatMessage) -> Document:
    # JSON text, as the SQLite store keeps it: tool arguments may hold keys MongoDB refuses.
    return {"body": message.model_dump_json(exclude_none=True), "tokens": message_tokens(message)}


def _status(turn: Document) -> TurnStatus:
    return TurnStatus(
        conversation_id=str(turn["conversation_id"]),
        state=cast(TurnState, turn["state"]),
        attempts=int(turn["attempts"]),
        cancel_requested=turn["cancel_requested_at"] is not None,
        finished_by=turn["finished_by"],
    )
