"""The MongoDB collections' indexes, created (idempotently) at start-up.

Every document carries `tenant_id` and `user_id`, and every index starts with them: each
query names the user, and an erasure is one indexed delete per collection. The unique
indexes are the idempotency of each write (a redelivered write hits them and is read back
instead); the TTL indexes expire what has a lifetime of its own.

Frames have no TTL index on purpose: the TTL monitor deletes document by document, so it
could leave a gap among the kept frames or take a conversation's last one, and the last
frame is what carries the seq counter (`frames`). The retention sweep deletes them.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, TEXT, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

Document = dict[str, Any]
USER = [("tenant_id", ASCENDING), ("user_id", ASCENDING)]
CONVERSATION = [*USER, ("conversation_id", ASCENDING)]
INDEX_OPTIONS_CONFLICT = 85  # same keys, other options: a changed TTL


def indexes(reasoning_retention_seconds: float) -> dict[str, list[IndexModel]]:
    def unique(name: str, *keys: tuple[str, Any]) -> IndexModel:
        return IndexModel(list(keys), name=name, unique=True)

    return {
        "conversations": [IndexModel(USER, name="by_user")],
        "turns": [
            unique("turn_index", ("conversation_id", ASCENDING), ("turn_index", ASCENDING)),
            IndexModel(USER, name="by_user"),
        ],
        "messages": [unique("position", *CONVERSATION, ("turn_index", ASCENDING), ("position", ASCENDING))],
        "frames": [
            unique("seq", *CONVERSATION, ("seq", ASCENDING)),
            unique("event_id", *CONVERSATION, ("event_id", ASCENDING)),
            IndexModel([("created_at", ASCENDING)], name="by_age"),
        ],
        "reasoning": [
            unique("step", *USER, ("turn_id", ASCENDING), ("step", ASCENDING)),
            IndexModel([("created", ASCENDING)], name="retention", expireAfterSeconds=int(reasoning_retention_seconds)),
        ],
        "tool_calls": [unique("call", *USER, ("turn_id", ASCENDING), ("call_id", ASCENDING))],
        "approvals": [
            unique("approval", *CONVERSATION, ("turn_id", ASCENDING), ("call_id", ASCENDING)),
            IndexModel([*USER, ("turn_id", ASCENDING), ("call_id", ASCENDING)], name="by_turn"),
        ],
        "tool_tokens": [
            unique("window", *USER, ("tool", ASCENDING), ("window_start", ASCENDING)),
            IndexModel([("expires", ASCENDING)], name="retention", expireAfterSeconds=0),
        ],
        "budget_counts": [
            unique("window", *USER, ("counter", ASCENDING), ("window_start", ASCENDING)),
            IndexModel([("expires", ASCENDING)], name="retention", expireAfterSeconds=0),
        ],
        "turn_admissions": [
            IndexModel([*USER, ("admitted_at", ASCENDING)], name="by_user"),
            IndexModel([("expires", ASCENDING)], name="retention", expireAfterSeconds=0),
        ],
        "summaries": [IndexModel(USER, name="by_user")],
        "facts": [
            unique("fact", *USER, ("key", ASCENDING)),
            IndexModel([*USER, ("confirmed_at", DESCENDING)], name="by_confirmation"),
            # Equality on the user first: $text then searches only that user's facts.
            IndexModel([*USER, ("text", TEXT)], name="search", default_language="english"),
        ],
        "tasks": [
            unique("task", *USER, ("key", ASCENDING)),
            IndexModel([*USER, ("updated_at", DESCENDING)], name="by_update"),
        ],
        "erasures": [unique("user", *USER)],
    }


async def ensure_indexes(db: AsyncDatabase[Document], reasoning_retention_seconds: float) -> None:
    """Create what is missing; a changed retention updates the TTL index in place."""
    for collection, models in indexes(reasoning_retention_seconds).items():
        try:
            await db[collection].create_indexes(models)
        except OperationFailure as exc:
            if exc.code != INDEX_OPTIONS_CONFLICT:
                raise
            for model in models:
                spec = model.document
                if "expireAfterSeconds" in spec:
                    await db.command(
                        {
                            "collMod": collection,
                            "index": {"name": spec["name"], "expireAfterSeconds": spec["expireAfterSeconds"]},
                        }
                    )
            await db[collection].create_indexes(models)
