"""The MongoDB store (`MONGODB_URL`), through PyMongo's async API (`AsyncMongoClient`; not
Motor, which MongoDB deprecated). The same `Store` contract as `SqliteStore`, on a
standalone mongod or a replica set: see `base` for how writes stay idempotent
without transactions and `schema` for the collections and their indexes.
"""

from __future__ import annotations

from agentry_memory.store.mongo.admin import MongoAdmin
from agentry_memory.store.mongo.approvals import MongoApprovals
from agentry_memory.store.mongo.budgets import MongoBudgets
from agentry_memory.store.mongo.context import MongoContext
from agentry_memory.store.mongo.conversations import MongoConversations
from agentry_memory.store.mongo.facts import MongoFacts
from agentry_memory.store.mongo.frames import MongoFrames
from agentry_memory.store.mongo.tool_calls import MongoToolCalls
from agentry_memory.store.mongo.turns import MongoTurns


class MongoStore(
    MongoTurns,
    MongoConversations,
    MongoContext,
    MongoFrames,
    MongoToolCalls,
    MongoApprovals,
    MongoBudgets,
    MongoFacts,
    MongoAdmin,
):
    """`Store` on the MongoDB database `database` at `url`; indexes are created on open."""
