"""Facts and tasks on MongoDB, searched with the `$text` index.

Remembering is a read (the exact key, then `$text` candidates for a near-identical
fact) followed by one write; the unique (user, key) index keeps an exact duplicate out
even when two calls race, but two near-identical wordings remembered at the same instant
can both be kept (the SQLite store decides that in one transaction).
"""

from __future__ import annotations

from typing import Any, cast

from agentry_shared.contracts.facts import FactCategory, TaskStatus
from agentry_shared.contracts.scope import Scope
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agentry_memory.store import knowledge
from agentry_memory.store.errors import Invalid
from agentry_memory.store.knowledge import fact_key, same_fact, search_terms
from agentry_memory.store.mongo.base import MongoBase, user_filter
from agentry_memory.store.mongo.schema import Document
from agentry_memory.store.records import Fact, Task

NEAR_CANDIDATES = 5


class MongoFacts(MongoBase):
    async def remember_fact(
        self, scope: Scope, turn_id: str | None, text: str, category: FactCategory, now: float
    ) -> tuple[Fact, bool]:
        key, text = fact_key(text), " ".join(text.split())
        if not key:
            raise Invalid("a fact needs at least one word")
        await self._owned(scope)
        facts = self._c("facts")
        fields = {
            "key": key,
            "text": text,
            "category": category,
            "conversation_id": scope.conversation_id,
            "turn_id": turn_id,
        }
        for _ in range(3):
            existing = await facts.find_one({**user_filter(scope), "key": key}) or await self._near(scope, key)
            if existing is not None:
                updated = await facts.find_one_and_update(
                    {"_id": existing["_id"]},
                    {"$set": fields, "$max": {"confirmed_at": now}},
                    return_document=ReturnDocument.AFTER,
                )
                if updated is not None:
                    return _fact(updated), False
                continue  # erased meanwhile: remember it afresh
            document = {**user_filter(scope), **fields, "created_at": now, "confirmed_at": now}
            try:
                await facts.insert_one(document)
            except DuplicateKeyError:
                continue  # the same fact remembered at once elsewhere: refresh that one
            await self._evict("facts", scope, document["_id"], knowledge.MAX_FACTS_PER_USER, "confirmed_at")
            return _fact(document), True
        raise RuntimeError("could not remember the fact: it kept changing")

    async def _near(self, scope: Scope, key: str) -> Document | None:
        terms = search_terms(key)
        if not terms:
            return None
        candidates = self._c("facts").find(
            {**user_filter(scope), "$text": {"$search": " ".join(terms)}}, {"score": {"$meta": "textScore"}}
        )
        async for candidate in candidates.sort([("score", {"$meta": "textScore"})]).limit(NEAR_CANDIDATES):
            if same_fact(key, str(candidate["key"])):
                return candidate
        return None

    async def recall_facts(self, scope: Scope, query: str, limit: int) -> list[Fact]:
        await self._owned(scope)
        terms = search_terms(query)
        if not terms:
            cursor = self._c("facts").find(user_filter(scope)).sort("confirmed_at", DESCENDING)
        else:
            cursor = self._c("facts").find(
                {**user_filter(scope), "$text": {"$search": " ".join(terms)}}, {"score": {"$meta": "textScore"}}
            )
            cursor = cursor.sort([("score", {"$meta": "textScore"}), ("confirmed_at", DESCENDING)])
        return [_fact(doc) async for doc in cursor.limit(limit)]

    async def update_task(
        self, scope: Scope, turn_id: str | None, title: str, status: TaskStatus, progress: str, now: float
    ) -> tuple[Task, bool]:
        key, title = fact_key(title), " ".join(title.split())
        if not key:
            raise Invalid("a task needs at least one word")
        await self._owned(scope)
        tasks = self._c("tasks")
        changes: dict[str, Any] = {
            "key": key,
            "title": title,
            "status": status,
            "conversation_id": scope.conversation_id,
            "turn_id": turn_id,
            "updated_at": now,
        }
        if progress:
            changes["progress"] = progress
        for _ in range(3):
            keys = [doc async for doc in tasks.find(user_filter(scope), {"key": 1})]
            match = next((d for d in keys if d["key"] == key), None) or next(
                (d for d in keys if same_fact(key, str(d["key"]))), None
            )
            if match is not None:
                updated = await tasks.find_one_and_update(
                    {"_id": match["_id"]}, {"$set": changes}, return_document=ReturnDocument.AFTER
                )
                if updated is not None:
                    return _task(updated), False
                continue
            document = {**user_filter(scope), "progress": "", **changes, "created_at": now}
            try:
                await tasks.insert_one(document)
            except DuplicateKeyError:
                continue
            await self._evict("tasks", scope, document["_id"], knowledge.MAX_TASKS_PER_USER, "updated_at")
            return _task(document), True
        raise RuntimeError("could not update the task: it kept changing")

    async def _evict(self, name: str, scope: Scope, added: object, most: int, order: str) -> None:
        """Past `most` documents of the user, delete the first ones by `order` (tasks: the
        done ones first), never the one just `added`. Two replicas adding at once may
        leave one too many, until the next addition."""
        collection = self._c(name)
        excess = await collection.count_documents(user_filter(scope)) - most
        for first in [{"status": "done"}, {}] if name == "tasks" else [{}]:
            if excess <= 0:
                return
            where = {**user_filter(scope), **first, "_id": {"$ne": added}}
            oldest = collection.find(where, {"_id": 1}).sort([(order, ASCENDING), ("_id", ASCENDING)]).limit(excess)
            ids = [doc["_id"] async for doc in oldest]
            excess -= (await collection.delete_many({"_id": {"$in": ids}})).deleted_count

    async def tasks(self, scope: Scope, include_done: bool, limit: int) -> list[Task]:
        await self._owned(scope)
        where: Document = user_filter(scope) if include_done else {**user_filter(scope), "status": {"$ne": "done"}}
        cursor = self._c("tasks").find(where).sort([("updated_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [_task(doc) async for doc in cursor]


def _fact(doc: Document) -> Fact:
    return Fact(
        fact_id=str(doc["_id"]),
        text=str(doc["text"]),
        category=cast(FactCategory, doc["category"]),
        conversation_id=doc.get("conversation_id"),
        turn_id=doc.get("turn_id"),
        created_at=float(doc["created_at"]),
        confirmed_at=float(doc["confirmed_at"]),
    )


def _task(doc: Document) -> Task:
    return Task(
        task_id=str(doc["_id"]),
        title=str(doc["title"]),
        status=cast(TaskStatus, doc["status"]),
        progress=str(doc.get("progress", "")),
        conversation_id=doc.get("conversation_id"),
        turn_id=doc.get("turn_id"),
        created_at=float(doc["created_at"]),
        updated_at=float(doc["updated_at"]),
    )
