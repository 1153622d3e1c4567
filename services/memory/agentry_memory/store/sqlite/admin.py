"""The operator's side of the SQLite store: the reasoning audit, erasure of a user, and the
retention of reasoning. No RPC reaches these; `admin.py` and the sweeper do."""

from __future__ import annotations

import time

from agentry_memory.store.errors import NotFound
from agentry_memory.store.records import ReasoningStep
from agentry_memory.store.sqlite.base import SqliteBase

# Each kind of row about a user, found through the user's conversations or the tenant and
# user columns. Children first: foreign keys point up.
ERASE: list[tuple[str, str]] = [
    (
        "reasoning",
        "DELETE FROM reasoning WHERE turn IN (SELECT turns.id FROM turns JOIN conversations c "
        "ON c.id = turns.conversation WHERE c.tenant_id = :tenant AND c.user_id = :user)",
    ),
    (
        "tool_calls",
        "DELETE FROM tool_calls WHERE turn IN (SELECT turns.id FROM turns JOIN conversations c "
        "ON c.id = turns.conversation WHERE c.tenant_id = :tenant AND c.user_id = :user)",
    ),
    (
        "approvals",
        "DELETE FROM approvals WHERE conversation IN "
        "(SELECT id FROM conversations WHERE tenant_id = :tenant AND user_id = :user)",
    ),
    (
        "messages",
        "DELETE FROM messages WHERE conversation IN "
        "(SELECT id FROM conversations WHERE tenant_id = :tenant AND user_id = :user)",
    ),
    (
        "frames",
        "DELETE FROM frames WHERE conversation IN "
        "(SELECT id FROM conversations WHERE tenant_id = :tenant AND user_id = :user)",
    ),
    (
        "summaries",
        "DELETE FROM summaries WHERE conversation IN "
        "(SELECT id FROM conversations WHERE tenant_id = :tenant AND user_id = :user)",
    ),
    (
        "turns",
        "DELETE FROM turns WHERE conversation IN "
        "(SELECT id FROM conversations WHERE tenant_id = :tenant AND user_id = :user)",
    ),
    ("conversations", "DELETE FROM conversations WHERE tenant_id = :tenant AND user_id = :user"),
    ("facts", "DELETE FROM facts WHERE tenant_id = :tenant AND user_id = :user"),
    ("tasks", "DELETE FROM tasks WHERE tenant_id = :tenant AND user_id = :user"),
    ("tool_tokens", "DELETE FROM tool_tokens WHERE tenant_id = :tenant AND user_id = :user"),
    ("budget_counts", "DELETE FROM budget_counts WHERE tenant_id = :tenant AND user_id = :user"),
    ("turn_admissions", "DELETE FROM turn_admissions WHERE tenant_id = :tenant AND user_id = :user"),
]
SWEEP_BATCH = 1000


class AdminTables(SqliteBase):
    async def reasoning_audit(self, tenant_id: str, user_id: str, turn_id: str) -> list[ReasoningStep]:
        return await self._run(self._reasoning_audit, tenant_id, user_id, turn_id)

    def _reasoning_audit(self, tenant_id: str, user_id: str, turn_id: str) -> list[ReasoningStep]:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT turns.id FROM turns JOIN conversations c ON c.id = turns.conversation "
                "WHERE turns.turn_id = ? AND c.tenant_id = ? AND c.user_id = ?",
                (turn_id, tenant_id, user_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no turn {turn_id} of {tenant_id}/{user_id}")
            rows = db.execute(
                "SELECT step, text, created_at FROM reasoning WHERE turn = ? ORDER BY step", (row[0],)
            ).fetchall()
        return [ReasoningStep(int(step), text, float(at)) for step, text, at in rows]

    async def erase_user(self, tenant_id: str, user_id: str) -> dict[str, int]:
        return await self._run(self._erase_user, tenant_id, user_id, time.time())

    def _erase_user(self, tenant_id: str, user_id: str, now: float) -> dict[str, int]:
        """One transaction: a crash leaves the user either whole or gone, never half; the
        erasure is recorded in it, so a turn accepted before it and stored after is refused."""
        counts: dict[str, int] = {}
        with self._tx() as db:
            for kind, statement in ERASE:
                counts[kind] = db.execute(statement, {"tenant": tenant_id, "user": user_id}).rowcount
            db.execute(
                "INSERT INTO erasures (tenant_id, user_id, erased_at) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant_id, user_id) DO UPDATE SET erased_at = MAX(erased_at, excluded.erased_at)",
                (tenant_id, user_id, now),
            )
        return counts

    async def erased_at(self, tenant_id: str, user_id: str) -> float | None:
        return await self._run(self._erased_at, tenant_id, user_id)

    def _erased_at(self, tenant_id: str, user_id: str) -> float | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT erased_at FROM erasures WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)
            ).fetchone()
        return None if row is None else float(row[0])

    async def sweep_reasoning(self, older_than: float) -> int:
        deleted = 0
        while True:
            count = await self._run(self._sweep_reasoning_batch, older_than)
            deleted += count
            if count < SWEEP_BATCH:
                return deleted

    def _sweep_reasoning_batch(self, older_than: float) -> int:
        """Batches, so the log and the RPCs on the same worker thread wait only a moment."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM reasoning WHERE rowid IN (SELECT rowid FROM reasoning WHERE created_at < ? LIMIT ?)",
                (older_than, SWEEP_BATCH),
            ).rowcount
