"""Turn budgets on MongoDB: turns per minute, concurrent turns and model tokens per day,
per user and per tenant. Each count is one atomic `$inc`; the checks of an admission and
its counts are not one transaction, so admissions racing on several replicas may pass a
budget by a few (as the conversation limit: see `ConversationStore.claim_conversation`)."""

from __future__ import annotations

import contextlib
from typing import Any

from agentry_shared.contracts.memory import TurnBudgets
from agentry_shared.contracts.scope import Scope
from pymongo.errors import DuplicateKeyError

from agentry_memory.store.mongo.base import MongoBase, as_date, retry_duplicate
from agentry_memory.store.records import (
    ADMISSION_GRACE_SECONDS,
    ADMISSION_LIFETIME_SECONDS,
    DAY_SECONDS,
    FINISHED,
    TENANT,
    TOKEN_WINDOW_SECONDS,
    Admission,
    BudgetLevel,
    budget_levels,
    day_window,
    over_budget,
    token_window,
)

_WINDOWS = {"turns": TOKEN_WINDOW_SECONDS, "tokens": DAY_SECONDS}


class MongoBudgets(MongoBase):
    async def admit_turn(self, scope: Scope, turn_id: str, budgets: TurnBudgets, now: float) -> Admission:
        await self._owned(scope)
        admissions = self._c("turn_admissions")
        if not budgets.any or await admissions.find_one({"_id": turn_id}) is not None:
            return Admission(True)
        levels = budget_levels(scope.user_id, budgets)
        for level in levels:
            turns = await self._count(scope.tenant_id, level.owner, "turns", now)
            tokens = await self._count(scope.tenant_id, level.owner, "tokens", now)
            refused = over_budget(level, turns, await self._running(scope.tenant_id, level, now), tokens, now)
            if refused is not None:
                return refused
        for level in levels:
            await self._add(scope.tenant_id, level.owner, "turns", now, 1)
        admitted = {
            "_id": turn_id,
            "tenant_id": scope.tenant_id,
            "user_id": scope.user_id,
            "admitted_at": now,
            "expires": as_date(now + ADMISSION_LIFETIME_SECONDS),
        }
        with contextlib.suppress(DuplicateKeyError):  # admitted twice at once: counted twice, kept once
            await admissions.insert_one(admitted)
        return Admission(True)

    async def record_usage(self, scope: Scope, tokens: int, now: float) -> None:
        await self._owned(scope)
        for owner in (scope.user_id, TENANT):
            await self._add(scope.tenant_id, owner, "tokens", now, tokens)

    def _window(self, counter: str, now: float) -> float:
        return token_window(now) if counter == "turns" else day_window(now)

    async def _count(self, tenant_id: str, owner: str, counter: str, now: float) -> int:
        found = await self._c("budget_counts").find_one(
            {"tenant_id": tenant_id, "user_id": owner, "counter": counter, "window_start": self._window(counter, now)}
        )
        return 0 if found is None else int(found["used"])

    async def _add(self, tenant_id: str, owner: str, counter: str, now: float, amount: int) -> None:
        """One document per (payer, counter, window), counted with `$inc`; the TTL index drops past windows."""
        window = self._window(counter, now)

        async def count() -> Any:
            return await self._c("budget_counts").update_one(
                {"tenant_id": tenant_id, "user_id": owner, "counter": counter, "window_start": window},
                {"$inc": {"used": amount}, "$setOnInsert": {"expires": as_date(window + 2 * _WINDOWS[counter])}},
                upsert=True,
            )

        await retry_duplicate(count)

    async def _running(self, tenant_id: str, level: BudgetLevel, now: float) -> int:
        """Admitted turns not finished: those the log recorded and that have not ended, and
        those it has not recorded yet, admitted within the grace."""
        if level.concurrent_turns <= 0:
            return 0
        named: dict[str, Any] = {"tenant_id": tenant_id, "admitted_at": {"$gt": now - ADMISSION_LIFETIME_SECONDS}}
        if level.owner != TENANT:
            named["user_id"] = level.owner
        admitted = {a["_id"]: float(a["admitted_at"]) async for a in self._c("turn_admissions").find(named)}
        if not admitted:
            return 0
        states = {
            t["_id"]: t["state"] async for t in self._c("turns").find({"_id": {"$in": list(admitted)}}, {"state": 1})
        }
        grace = now - ADMISSION_GRACE_SECONDS
        return sum(
            1
            for turn_id, at in admitted.items()
            if (turn_id not in states and at > grace) or (turn_id in states and states[turn_id] not in FINISHED)
        )
