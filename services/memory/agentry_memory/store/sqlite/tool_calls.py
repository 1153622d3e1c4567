"""Tool-call claims on SQLite: a call runs once, and its result is kept by call_id."""

from __future__ import annotations

import json
import time
from typing import Any

from agentry_shared.contracts.scope import Scope

from agentry_memory.store.records import ToolCall
from agentry_memory.store.sqlite.base import SqliteBase


class ToolCallTables(SqliteBase):
    async def claim_tool_call(self, scope: Scope, turn_id: str, call_id: str, tool: str) -> ToolCall:
        return await self._write(self._claim_tool_call, scope, turn_id, call_id, tool)

    def _claim_tool_call(self, scope: Scope, turn_id: str, call_id: str, tool: str) -> ToolCall:
        now = time.time()
        with self._tx() as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            row = db.execute(
                "SELECT claimed_at, result FROM tool_calls WHERE turn = ? AND call_id = ?", (turn, call_id)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO tool_calls (turn, call_id, tool, claimed_at) VALUES (?, ?, ?, ?)",
                    (turn, call_id, tool, now),
                )
                return ToolCall("new")
            claimed_at, result = row
            if result is not None:
                return ToolCall("done", result=json.loads(result))
            return ToolCall("running", claimed_seconds_ago=max(0.0, now - claimed_at))

    async def complete_tool_call(self, scope: Scope, turn_id: str, call_id: str, result: dict[str, Any]) -> None:
        await self._write(self._complete_tool_call, scope, turn_id, call_id, result)

    def _complete_tool_call(self, scope: Scope, turn_id: str, call_id: str, result: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            # Completing an unclaimed call records it too; a second completion changes nothing.
            db.execute(
                "INSERT INTO tool_calls (turn, call_id, tool, claimed_at, result, completed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (turn, call_id) DO UPDATE "
                "SET result = excluded.result, completed_at = excluded.completed_at WHERE tool_calls.result IS NULL",
                (turn, call_id, str(result.get("tool", "")), now, json.dumps(result, ensure_ascii=False), now),
            )
