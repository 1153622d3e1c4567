"""The operator's side of the MongoDB store: the reasoning audit, erasure, reasoning sweep."""

from __future__ import annotations

import time

from agentry_memory.store.errors import NotFound
from agentry_memory.store.mongo.base import MongoBase, as_date
from agentry_memory.store.records import ReasoningStep

# Every collection holds tenant_id and user_id, so erasure is one indexed delete in each;
# children first, so an erasure cut short leaves nothing pointing at what is gone.
ERASE_ORDER = [
    "reasoning",
    "tool_calls",
    "approvals",
    "messages",
    "frames",
    "summaries",
    "turns",
    "conversations",
    "facts",
    "tasks",
    "tool_tokens",
    "budget_counts",
    "turn_admissions",
]


class MongoAdmin(MongoBase):
    async def reasoning_audit(self, tenant_id: str, user_id: str, turn_id: str) -> list[ReasoningStep]:
        user = {"tenant_id": tenant_id, "user_id": user_id}
        if await self._c("turns").find_one({"_id": turn_id, **user}, {"_id": 1}) is None:
            raise NotFound(f"no turn {turn_id} of {tenant_id}/{user_id}")
        cursor = self._c("reasoning").find({**user, "turn_id": turn_id}).sort("step", 1)
        return [ReasoningStep(int(d["step"]), str(d["text"]), float(d["recorded_at"])) async for d in cursor]

    async def erase_user(self, tenant_id: str, user_id: str) -> dict[str, int]:
        """Not one transaction (none on a standalone mongod): run it again if it was cut
        short; what is left is deleted then. The erasure is recorded first: a turn accepted
        before it that the log stores meanwhile either is stored before the record (and
        deleted here) or finds the record when it checks after its writes (and undoes them:
        `MongoTurns`)."""
        user = {"tenant_id": tenant_id, "user_id": user_id}
        await self._c("erasures").update_one(user, {"$max": {"erased_at": time.time()}}, upsert=True)
        return {name: (await self._c(name).delete_many(user)).deleted_count for name in ERASE_ORDER}

    async def sweep_reasoning(self, older_than: float) -> int:
        """The TTL index deletes the same documents within a minute or so; this makes the
        retention exact and lets the contract tests see it."""
        return (await self._c("reasoning").delete_many({"created": {"$lt": as_date(older_than)}})).deleted_count
