"""Facts and tasks on SQLite: one row per fact of a user, found again by FTS5.

A fact told again in near-identical words refreshes its row (wording, category, turn,
`confirmed_at`) in the same transaction that looked for it, so two replicas remembering
the same thing at once still keep one row.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from agentry_shared.contracts.facts import FactCategory, TaskStatus
from agentry_shared.contracts.scope import Scope

from agentry_memory.store import knowledge
from agentry_memory.store.errors import Invalid
from agentry_memory.store.knowledge import fact_key, same_fact, search_terms
from agentry_memory.store.records import Fact, Task
from agentry_memory.store.sqlite.base import SqliteBase

NEAR_CANDIDATES = 5
# Per kind: how many rows the user has, and the deletion of the oldest past the limit
# (facts: least recently confirmed; tasks: done ones first, then least recently updated).
EVICT = {
    "facts": (
        "SELECT COUNT(*) FROM facts WHERE tenant_id = ? AND user_id = ?",
        "DELETE FROM facts WHERE id IN (SELECT id FROM facts WHERE tenant_id = ? AND user_id = ? AND id != ? "
        "ORDER BY confirmed_at, id LIMIT ?)",
    ),
    "tasks": (
        "SELECT COUNT(*) FROM tasks WHERE tenant_id = ? AND user_id = ?",
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE tenant_id = ? AND user_id = ? AND id != ? "
        "ORDER BY status != 'done', updated_at, id LIMIT ?)",
    ),
}


def owner_token(tenant_id: str, user_id: str) -> str:
    """One FTS token per user (hex, so the tokenizer keeps it whole)."""
    return "o" + hashlib.sha256(f"{tenant_id}\0{user_id}".encode()).hexdigest()[:32]


def match_expression(owner: str, terms: list[str]) -> str:
    """The user's posting list AND any of the terms (words only: nothing to escape)."""
    anyof = " OR ".join(f'"{term}"' for term in terms)
    return f'owner : "{owner}" AND text : ({anyof})'


class FactTables(SqliteBase):
    async def remember_fact(
        self, scope: Scope, turn_id: str | None, text: str, category: FactCategory, now: float
    ) -> tuple[Fact, bool]:
        return await self._run(self._remember_fact, scope, turn_id, text, category, now)

    def _remember_fact(
        self, scope: Scope, turn_id: str | None, text: str, category: FactCategory, now: float
    ) -> tuple[Fact, bool]:
        key, text = fact_key(text), " ".join(text.split())
        if not key:
            raise Invalid("a fact needs at least one word")
        owner = owner_token(scope.tenant_id, scope.user_id)
        with self._tx() as db:
            self._owned(db, scope)
            existing = self._near_fact(db, scope, owner, key)
            if existing is None:
                cursor = db.execute(
                    "INSERT INTO facts (tenant_id, user_id, owner, key, text, category, conversation_id, turn_id, "
                    "created_at, confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        scope.tenant_id,
                        scope.user_id,
                        owner,
                        key,
                        text,
                        category,
                        scope.conversation_id,
                        turn_id,
                        now,
                        now,
                    ),
                )
                fact_id, created = cursor.lastrowid, True
                _evict(db, "facts", scope, fact_id, knowledge.MAX_FACTS_PER_USER)
            else:
                db.execute(
                    "UPDATE facts SET key = ?, text = ?, category = ?, conversation_id = ?, turn_id = ?, "
                    "confirmed_at = MAX(confirmed_at, ?) WHERE id = ?",
                    (key, text, category, scope.conversation_id, turn_id, now, existing),
                )
                fact_id, created = existing, False
            row = db.execute("SELECT f.* FROM facts f WHERE f.id = ?", (fact_id,)).fetchone()
        return _fact(row), created

    @staticmethod
    def _near_fact(db: sqlite3.Connection, scope: Scope, owner: str, key: str) -> int | None:
        row = db.execute(
            "SELECT id FROM facts WHERE tenant_id = ? AND user_id = ? AND key = ?",
            (scope.tenant_id, scope.user_id, key),
        ).fetchone()
        if row is not None:
            return int(row[0])
        terms = search_terms(key)
        if not terms:
            return None
        candidates = db.execute(
            "SELECT f.id, f.key FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid "
            "WHERE facts_fts MATCH ? AND f.tenant_id = ? AND f.user_id = ? ORDER BY bm25(facts_fts, 0.0, 1.0) LIMIT ?",
            (match_expression(owner, terms), scope.tenant_id, scope.user_id, NEAR_CANDIDATES),
        ).fetchall()
        return next((int(fact_id) for fact_id, other in candidates if same_fact(key, other)), None)

    async def recall_facts(self, scope: Scope, query: str, limit: int) -> list[Fact]:
        return await self._run(self._recall_facts, scope, query, limit)

    def _recall_facts(self, scope: Scope, query: str, limit: int) -> list[Fact]:
        terms = search_terms(query)
        with self._tx(write=False) as db:
            self._owned(db, scope)
            if not terms:
                rows = db.execute(
                    "SELECT f.* FROM facts f WHERE f.tenant_id = ? AND f.user_id = ? "
                    "ORDER BY f.confirmed_at DESC LIMIT ?",
                    (scope.tenant_id, scope.user_id, limit),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT f.* FROM facts_fts JOIN facts f ON f.id = facts_fts.rowid "
                    "WHERE facts_fts MATCH ? AND f.tenant_id = ? AND f.user_id = ? "
                    "ORDER BY bm25(facts_fts, 0.0, 1.0), f.confirmed_at DESC LIMIT ?",
                    (match_expression(owner_token(scope.tenant_id, scope.user_id), terms), *_user(scope), limit),
                ).fetchall()
        return [_fact(row) for row in rows]

    async def update_task(
        self, scope: Scope, turn_id: str | None, title: str, status: TaskStatus, progress: str, now: float
    ) -> tuple[Task, bool]:
        return await self._run(self._update_task, scope, turn_id, title, status, progress, now)

    def _update_task(
        self, scope: Scope, turn_id: str | None, title: str, status: TaskStatus, progress: str, now: float
    ) -> tuple[Task, bool]:
        key, title = fact_key(title), " ".join(title.split())
        if not key:
            raise Invalid("a task needs at least one word")
        with self._tx() as db:
            self._owned(db, scope)
            keys = db.execute("SELECT id, key FROM tasks WHERE tenant_id = ? AND user_id = ?", _user(scope)).fetchall()
            existing = next((int(i) for i, k in keys if k == key), None)
            existing = existing or next((int(i) for i, k in keys if same_fact(key, k)), None)
            if existing is None:
                cursor = db.execute(
                    "INSERT INTO tasks (tenant_id, user_id, key, title, status, progress, conversation_id, turn_id, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_user(scope), key, title, status, progress, scope.conversation_id, turn_id, now, now),
                )
                task_id, created = cursor.lastrowid, True
                _evict(db, "tasks", scope, task_id, knowledge.MAX_TASKS_PER_USER)
            else:
                db.execute(
                    "UPDATE tasks SET key = ?, title = ?, status = ?, progress = CASE WHEN ? = '' THEN progress "
                    "ELSE ? END, conversation_id = ?, turn_id = ?, updated_at = ? WHERE id = ?",
                    (key, title, status, progress, progress, scope.conversation_id, turn_id, now, existing),
                )
                task_id, created = existing, False
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _task(row), created

    async def tasks(self, scope: Scope, include_done: bool, limit: int) -> list[Task]:
        return await self._run(self._tasks, scope, include_done, limit)

    def _tasks(self, scope: Scope, include_done: bool, limit: int) -> list[Task]:
        with self._tx(write=False) as db:
            self._owned(db, scope)
            rows = db.execute(
                "SELECT * FROM tasks WHERE tenant_id = ? AND user_id = ? AND (? OR status != 'done') "
                "ORDER BY updated_at DESC, id DESC LIMIT ?",
                (*_user(scope), include_done, limit),
            ).fetchall()
        return [_task(row) for row in rows]


def _evict(db: sqlite3.Connection, kind: str, scope: Scope, added: int | None, most: int) -> None:
    """Past `most` rows of the user, delete the oldest (`EVICT`), never the one just `added`."""
    count_rows, delete_oldest = EVICT[kind]
    (count,) = db.execute(count_rows, _user(scope)).fetchone()
    if count > most:
        db.execute(delete_oldest, (*_user(scope), added, count - most))


def _user(scope: Scope) -> tuple[str, str]:
    return scope.tenant_id, scope.user_id


def _fact(row: sqlite3.Row | tuple[Any, ...]) -> Fact:
    """A `facts` row (SELECT f.*, the schema's column order)."""
    fact_id, _, _, _, _, text, category, conversation_id, turn_id, created_at, confirmed_at = row
    return Fact(str(fact_id), text, category, conversation_id, turn_id, float(created_at), float(confirmed_at))


def _task(row: sqlite3.Row | tuple[Any, ...]) -> Task:
    """A `tasks` row (SELECT *, the schema's column order)."""
    task_id, _, _, _, title, status, progress, conversation_id, turn_id, created_at, updated_at = row
    return Task(str(task_id), title, status, progress, conversation_id, turn_id, float(created_at), float(updated_at))
