"""`FakeMongoClient`: mongomock (synchronous, in memory) behind the slice of PyMongo's async
API the MongoDB store uses, so the contract suite can run against a document store here,
where no MongoDB server can be installed. A stand-in, not MongoDB:

- every call yields to the event loop first, so concurrent calls interleave between
  operations (each operation itself is atomic, as one document operation is in MongoDB);
- `$text` is emulated: a document matches when its `text` shares a word with the search
  after a crude suffix strip (not MongoDB's Snowball stemmer, stop words or weights), and
  `{"$meta": "textScore"}` is the count of shared words;
- text indexes are not created (mongomock has none); unique and TTL indexes are, and TTL
  expiry never runs (the store's sweeps do the deleting the tests look at).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import mongomock
from pymongo import UpdateOne

Document = dict[str, Any]


def _stem(word: str) -> str:
    for suffix in ("ences", "ence", "ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _words(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"\w+", text.lower())}


def _is_text_score(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$meta") == "textScore"


class ListCursor:
    """What an aggregation answers: documents already computed."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._documents = documents

    def __aiter__(self) -> Any:
        async def iterate() -> Any:
            for document in self._documents:
                yield document

        return iterate()


class FakeMongoCursor:
    def __init__(self, collection: mongomock.Collection[Document], where: dict[str, Any], projection: Any) -> None:
        self._collection = collection
        self._search: str | None = None
        where = dict(where)
        if "$text" in where:
            self._search = where.pop("$text")["$search"]
        self._where = where
        self._projection = (
            {k: v for k, v in projection.items() if not _is_text_score(v)} or None if projection else None
        )
        self._sort: list[tuple[str, Any]] = []
        self._limit = 0

    def sort(self, key: Any, direction: int = 1) -> FakeMongoCursor:
        self._sort = [(key, direction)] if isinstance(key, str) else list(key)
        return self

    def limit(self, count: int) -> FakeMongoCursor:
        self._limit = count
        return self

    def batch_size(self, _size: int) -> FakeMongoCursor:
        return self

    def _documents(self) -> list[dict[str, Any]]:
        plain_sort = [(k, d) for k, d in self._sort if not _is_text_score(d)]
        if self._search is None:
            cursor = self._collection.find(self._where, self._projection)
            if plain_sort:
                cursor = cursor.sort(plain_sort)
            return list(cursor.limit(self._limit)) if self._limit else list(cursor)
        terms = _words(self._search)
        found = []
        for document in self._collection.find(self._where):
            score = len(terms & _words(str(document.get("text", ""))))
            if score:
                found.append({**document, "score": float(score)})
        for key, direction in reversed(self._sort):  # stable sorts, least significant first
            field = "score" if _is_text_score(direction) else key
            found.sort(key=lambda d: d.get(field) or 0, reverse=_is_text_score(direction) or direction == -1)
        return found[: self._limit] if self._limit else found

    def __aiter__(self) -> Any:
        async def iterate() -> Any:
            await asyncio.sleep(0)
            for document in self._documents():
                yield document

        return iterate()

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return self._documents()[:length] if length else self._documents()

    async def close(self) -> None:
        return None


class FakeMongoCollection:
    def __init__(self, collection: mongomock.Collection[Document]) -> None:
        self._c = collection

    def find(self, where: dict[str, Any] | None = None, projection: Any = None) -> FakeMongoCursor:
        return FakeMongoCursor(self._c, where or {}, projection)

    async def find_one(self, where: dict[str, Any] | None = None, projection: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        cursor = self.find(where, projection)
        if "sort" in kwargs:
            cursor.sort(kwargs["sort"])
        found = cursor.limit(1)._documents()
        return found[0] if found else None

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> ListCursor:
        await asyncio.sleep(0)
        return ListCursor(list(self._c.aggregate(pipeline)))

    async def bulk_write(self, operations: list[UpdateOne], ordered: bool = True) -> None:
        for operation in operations:
            await self.update_one(operation._filter, operation._doc, upsert=operation._upsert)

    async def create_indexes(self, models: list[Any]) -> list[str]:
        await asyncio.sleep(0)
        plain = [m for m in models if "text" not in m.document["key"].values()]
        return list(self._c.create_indexes(plain)) if plain else []

    def __getattr__(self, name: str) -> Any:
        """insert_one, update_one, find_one_and_update, delete_many, ...: the same call,
        awaited, after a yield to the loop."""
        method = getattr(self._c, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return method(*args, **kwargs)

        return call


class FakeMongoDatabase:
    def __init__(self, database: mongomock.Database[Document]) -> None:
        self._db = database
        self._collections: dict[str, FakeMongoCollection] = {}

    def __getitem__(self, name: str) -> FakeMongoCollection:
        return self._collections.setdefault(name, FakeMongoCollection(self._db[name]))

    async def command(self, command: dict[str, Any]) -> Any:
        return self._db.command(command)

    async def list_collection_names(self) -> list[str]:
        await asyncio.sleep(0)
        return list(self._db.list_collection_names())


class FakeMongoClient:
    """One in-memory server: stores opened on the same client see the same data."""

    def __init__(self) -> None:
        self._client: mongomock.MongoClient[Document] = mongomock.MongoClient()
        self._databases: dict[str, FakeMongoDatabase] = {}

    def __getitem__(self, name: str) -> FakeMongoDatabase:
        return self._databases.setdefault(name, FakeMongoDatabase(self._client[name]))

    async def close(self) -> None:
        return None
