"""Turn budgets on SQLite: turns per minute, concurrent turns and model tokens per day, per
user and per tenant. An admission is one transaction on the single writer: every check and
every count of it together, for all replicas of the gateway."""

from __future__ import annotations

import sqlite3

from agentry_shared.contracts.memory import TurnBudgets
from agentry_shared.contracts.scope import Scope

from agentry_memory.store.records import (
    ADMISSION_GRACE_SECONDS,
    ADMISSION_LIFETIME_SECONDS,
    FINISHED,
    TENANT,
    Admission,
    BudgetLevel,
    budget_levels,
    day_window,
    over_budget,
    token_window,
)
from agentry_memory.store.sqlite.base import SqliteBase

_FINISHED = tuple(sorted(FINISHED))


class BudgetTables(SqliteBase):
    async def admit_turn(self, scope: Scope, turn_id: str, budgets: TurnBudgets, now: float) -> Admission:
        return await self._run(self._admit_turn, scope, turn_id, budgets, now)

    def _admit_turn(self, scope: Scope, turn_id: str, budgets: TurnBudgets, now: float) -> Admission:
        with self._tx() as db:
            self._owned(db, scope)
            known = db.execute("SELECT 1 FROM turn_admissions WHERE turn_id = ?", (turn_id,)).fetchone()
            if known is not None or not budgets.any:
                return Admission(True)
            db.execute(  # the tenant's admissions past counting
                "DELETE FROM turn_admissions WHERE tenant_id = ? AND admitted_at < ?",
                (scope.tenant_id, now - ADMISSION_LIFETIME_SECONDS),
            )
            levels = budget_levels(scope.user_id, budgets)
            for level in levels:
                turns = self._count(db, scope.tenant_id, level.owner, "turns", token_window(now))
                tokens = self._count(db, scope.tenant_id, level.owner, "tokens", day_window(now))
                refused = over_budget(level, turns, self._running(db, scope.tenant_id, level, now), tokens, now)
                if refused is not None:
                    return refused
            for level in levels:
                self._add(db, scope.tenant_id, level.owner, "turns", token_window(now), 1)
            db.execute(
                "INSERT INTO turn_admissions (turn_id, tenant_id, user_id, admitted_at) VALUES (?, ?, ?, ?)",
                (turn_id, scope.tenant_id, scope.user_id, now),
            )
        return Admission(True)

    async def record_usage(self, scope: Scope, tokens: int, now: float) -> None:
        await self._run(self._record_usage, scope, tokens, now)

    def _record_usage(self, scope: Scope, tokens: int, now: float) -> None:
        with self._tx() as db:
            self._owned(db, scope)
            for owner in (scope.user_id, TENANT):
                self._add(db, scope.tenant_id, owner, "tokens", day_window(now), tokens)

    @staticmethod
    def _count(db: sqlite3.Connection, tenant_id: str, owner: str, counter: str, window: float) -> int:
        row = db.execute(
            "SELECT used FROM budget_counts WHERE tenant_id = ? AND user_id = ? AND counter = ? AND window_start = ?",
            (tenant_id, owner, counter, window),
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _add(db: sqlite3.Connection, tenant_id: str, owner: str, counter: str, window: float, amount: int) -> None:
        # A new window (or a clock that stepped back) starts the count again.
        db.execute(
            "INSERT INTO budget_counts (tenant_id, user_id, counter, window_start, used) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, user_id, counter) DO UPDATE SET "
            "used = CASE WHEN window_start = excluded.window_start THEN used + excluded.used ELSE excluded.used END, "
            "window_start = excluded.window_start",
            (tenant_id, owner, counter, window, amount),
        )

    @staticmethod
    def _running(db: sqlite3.Connection, tenant_id: str, level: BudgetLevel, now: float) -> int:
        """Admitted turns not finished: those the log recorded and that have not ended, and
        those it has not recorded yet, admitted within the grace."""
        if level.concurrent_turns <= 0:
            return 0
        (running,) = db.execute(
            "SELECT COUNT(*) FROM turn_admissions a LEFT JOIN turns t ON t.turn_id = a.turn_id "
            "WHERE a.tenant_id = :tenant AND (:user = '' OR a.user_id = :user) AND a.admitted_at > :oldest "
            "AND ((t.id IS NULL AND a.admitted_at > :grace) OR t.state NOT IN (:f1, :f2, :f3))",
            {
                "tenant": tenant_id,
                "user": level.owner,
                "oldest": now - ADMISSION_LIFETIME_SECONDS,
                "grace": now - ADMISSION_GRACE_SECONDS,
                **{f"f{i}": state for i, state in enumerate(_FINISHED, 1)},
            },
        ).fetchone()
        return int(running)
