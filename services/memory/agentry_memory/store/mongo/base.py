"""The MongoDB plumbing the store's parts share: the client, the scope checks, retries.

Written for a standalone mongod as much as a replica set: no multi-document transactions.
Each write is one atomic document operation made idempotent by a unique index (an insert
that hits it reads the existing document back), counters are `$inc` on one document, and
where a method writes twice the second write is repeated by the redelivery that follows
a crash between them (each method's docstring says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from agentry_shared.contracts.scope import Scope
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from agentry_memory.store.errors import Erased, Forbidden, NotFound
from agentry_memory.store.mongo.schema import Document, ensure_indexes

T = TypeVar("T")
DEFAULT_REASONING_RETENTION_SECONDS = 30 * 86400.0


def user_filter(scope: Scope) -> Document:
    return {"tenant_id": scope.tenant_id, "user_id": scope.user_id}


def conversation_filter(scope: Scope) -> Document:
    return {**user_filter(scope), "conversation_id": scope.conversation_id}


def as_date(unix_time: float) -> datetime.datetime:
    """TTL indexes need BSON dates; naive UTC is what PyMongo stores them as."""
    return datetime.datetime.fromtimestamp(unix_time, tz=datetime.UTC).replace(tzinfo=None)


async def retry_duplicate(operation: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Two upserts of a new key at once: one inserts, the other hits the unique index and
    succeeds when repeated (it then finds the document)."""
    for _ in range(attempts - 1):
        try:
            return await operation()
        except DuplicateKeyError:
            continue
    return await operation()


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class MongoBase:
    def __init__(
        self,
        url: str,
        database: str,
        *,
        reasoning_retention_seconds: float = DEFAULT_REASONING_RETENTION_SECONDS,
        client: AsyncMongoClient[Document] | None = None,
    ) -> None:
        self.url = url
        self.database = database
        self.reasoning_retention_seconds = reasoning_retention_seconds
        self._given_client = client  # tests pass one; otherwise open() connects
        self._client: AsyncMongoClient[Document] | None = None
        self._db: AsyncDatabase[Document] | None = None
        self._appending = KeyedLocks()  # per conversation: see frames.py

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        if self._db is not None:
            return
        client = self._given_client or AsyncMongoClient(self.url, serverSelectionTimeoutMS=10_000, tz_aware=True)
        try:
            db = client[self.database]
            await ensure_indexes(db, self.reasoning_retention_seconds)
        except BaseException:
            if client is not self._given_client:
                await client.close()
            raise
        self._client, self._db = client, db

    async def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None and client is not self._given_client:
            await client.close()

    def _c(self, name: str) -> AsyncCollection[Document]:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db[name]

    async def _owned(self, scope: Scope) -> Document:
        """The scope's conversation: `NotFound` if none, `Forbidden` if someone else's."""
        conversation = await self._c("conversations").find_one({"_id": scope.conversation_id})
        if conversation is None:
            raise NotFound(f"no conversation {scope.conversation_id}")
        if (conversation["tenant_id"], conversation["user_id"]) != (scope.tenant_id, scope.user_id):
            raise Forbidden(f"conversation {scope.conversation_id} belongs to someone else")
        return conversation

    async def _create_or_owned(self, scope: Scope, now: float) -> bool:
        """Create the conversation for scope's user if new (True); else check it is theirs."""

        async def upsert() -> Any:
            return await self._c("conversations").update_one(
                {"_id": scope.conversation_id},
                {"$setOnInsert": {**user_filter(scope), "created_at": now, "turns": 0}},
                upsert=True,
            )

        result = await retry_duplicate(upsert)
        if result.upserted_id is not None:
            return True
        await self._owned(scope)
        return False

    async def erased_at(self, tenant_id: str, user_id: str) -> float | None:
        erasure = await self._c("erasures").find_one({"tenant_id": tenant_id, "user_id": user_id})
        return None if erasure is None else float(erasure["erased_at"])

    async def _refuse_if_erased(self, scope: Scope, accepted_at: float | None) -> None:
        """`Erased` if scope's user was erased at or after `accepted_at` (None: not checked)."""
        if accepted_at is None:
            return
        erased_at = await self.erased_at(scope.tenant_id, scope.user_id)
        if erased_at is not None and erased_at >= accepted_at:
            raise Erased(f"user erased at {erased_at}, after the turn was accepted at {accepted_at}")

    async def _turn(self, scope: Scope, turn_id: str) -> Document:
        """A turn of the scope's conversation (checked first); `NotFound` if not there."""
        await self._owned(scope)
        turn = await self._c("turns").find_one({"_id": turn_id, **conversation_filter(scope)})
        if turn is None:
            raise NotFound(f"no turn {turn_id} in this conversation")
        return turn
