"""The window of a turn and the rolling summary on MongoDB: the window is read newest first
in small batches and the cursor closed at the budget, so a long conversation costs what a
short one does."""

from __future__ import annotations

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from agentry_memory.context.windows import WholeTurns, Window
from agentry_memory.store.mongo.base import MongoBase, conversation_filter, user_filter
from agentry_memory.store.mongo.schema import Document
from agentry_memory.store.records import StoredMessage, Summary, TurnContext

BATCH = 64
FIELDS = {"_id": 0, "turn_index": 1, "position": 1, "tokens": 1, "body": 1}


def _stored(doc: Document) -> StoredMessage:
    return StoredMessage(
        int(doc["turn_index"]), int(doc["position"]), int(doc["tokens"]), ChatMessage.model_validate_json(doc["body"])
    )


class MongoContext(MongoBase):
    async def context(self, scope: Scope, turn_id: str, limit: int, max_tokens: int | None = None) -> TurnContext:
        turn = await self._turn(scope, turn_id)
        index = int(turn["turn_index"])
        summary = await self._summary(scope)
        budget = None if max_tokens is None else max_tokens - (summary.tokens if summary else 0)
        where = conversation_filter(scope)
        window = Window(limit, budget)
        cursor = (
            self._c("messages")
            .find({**where, "$or": [{"turn_index": {"$lt": index}}, {"turn_index": index, "position": 0}]}, FIELDS)
            .sort([("turn_index", DESCENDING), ("position", DESCENDING)])
            .batch_size(BATCH)
        )
        try:
            async for doc in cursor:
                if not window.offer(_stored(doc)):
                    break
        finally:
            await cursor.close()
        produced = self._c("messages").find({**where, "turn_index": index, "position": {"$gt": 0}}, FIELDS)
        return TurnContext(
            window=window.messages(),
            produced=[_stored(doc).message async for doc in produced.sort("position", ASCENDING)],
            summary=summary,
            left_out_turn=window.left_out_turn,
        )

    async def summary(self, scope: Scope) -> Summary | None:
        await self._owned(scope)
        return await self._summary(scope)

    async def _summary(self, scope: Scope) -> Summary | None:
        doc = await self._c("summaries").find_one({"_id": scope.conversation_id, **user_filter(scope)})
        if doc is None:
            return None
        return Summary(str(doc["text"]), int(doc["through_turn"]), int(doc["tokens"]), float(doc["updated_at"]))

    async def unsummarised(
        self, scope: Scope, after_turn: int, through_turn: int, max_tokens: int
    ) -> list[StoredMessage]:
        await self._owned(scope)
        batch = WholeTurns(max_tokens)
        cursor = (
            self._c("messages")
            .find({**conversation_filter(scope), "turn_index": {"$gt": after_turn, "$lte": through_turn}}, FIELDS)
            .sort([("turn_index", ASCENDING), ("position", ASCENDING)])
            .batch_size(BATCH)
        )
        try:
            async for doc in cursor:
                if not batch.offer(_stored(doc)):
                    break
        finally:
            await cursor.close()
        return batch.result()

    async def save_summary(self, scope: Scope, text: str, through_turn: int, tokens: int, now: float) -> bool:
        """Matches only a summary that covers less; if the kept one covers as much, the
        upsert hits the `_id` and nothing changes."""
        await self._owned(scope)
        try:
            await self._c("summaries").update_one(
                {"_id": scope.conversation_id, **user_filter(scope), "through_turn": {"$lt": through_turn}},
                {"$set": {"text": text, "through_turn": through_turn, "tokens": tokens, "updated_at": now}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True
