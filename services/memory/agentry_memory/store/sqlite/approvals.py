"""Approvals of destructive tool calls and per-user tool rate limits on SQLite.

Both are decided by several reasoner replicas (and the gateway) at once, so each is one
transaction on the single writer: an approval is decided once, a token is counted once.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import ApprovalState
from agentry_shared.contracts.scope import Scope

from agentry_memory.store.errors import NotFound
from agentry_memory.store.records import (
    TOKEN_WINDOW_SECONDS,
    ApprovalAnswer,
    ApprovalRecord,
    TokenTaken,
    kept_digest,
    token_window,
)
from agentry_memory.store.sqlite.base import SqliteBase


class ApprovalTables(SqliteBase):
    async def request_approval(
        self, scope: Scope, turn_id: str, call_id: str, tool: str, arguments: dict[str, Any], expires_at: float
    ) -> None:
        await self._run(self._request_approval, scope, turn_id, call_id, tool, arguments, expires_at)

    def _request_approval(
        self, scope: Scope, turn_id: str, call_id: str, tool: str, arguments: dict[str, Any], expires_at: float
    ) -> None:
        body = json.dumps(arguments, ensure_ascii=False)
        with self._tx() as db:
            conversation = self._owned(db, scope)
            self._turn(db, conversation, turn_id)
            # Asked again (a redelivery, a resumed turn): the first request and any decision stay.
            db.execute(
                "INSERT INTO approvals "
                "(conversation, turn_id, call_id, tool, arguments, args_sha256, requested_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (conversation, turn_id, call_id) DO NOTHING",
                (conversation, turn_id, call_id, tool, body, arguments_sha256(arguments), time.time(), expires_at),
            )

    async def approval(self, scope: Scope, turn_id: str, call_id: str, now: float) -> ApprovalRecord | None:
        return await self._run(self._approval, scope, turn_id, call_id, now)

    def _approval(self, scope: Scope, turn_id: str, call_id: str, now: float) -> ApprovalRecord | None:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            self._turn(db, conversation, turn_id)
            row = db.execute(
                "SELECT state, expires_at, args_sha256, arguments FROM approvals "
                "WHERE conversation = ? AND turn_id = ? AND call_id = ?",
                (conversation, turn_id, call_id),
            ).fetchone()
        if row is None:
            return None
        state, expires_at, stored, arguments = row
        shown: ApprovalState = "expired" if state == "pending" and now > expires_at else cast(ApprovalState, state)
        digest = kept_digest(stored, arguments)
        return ApprovalRecord(scope.conversation_id, turn_id, call_id, shown, args_sha256=digest)

    async def decide_approval(self, answer: ApprovalAnswer, now: float) -> ApprovalRecord:
        return await self._run(self._decide_approval, answer, now)

    def _decide_approval(self, answer: ApprovalAnswer, now: float) -> ApprovalRecord:
        with self._tx() as db:
            # Turn ids are unique: with the user's (and the conversation, if named) this is one row.
            row = db.execute(
                "SELECT a.id, c.conversation_id, a.state, a.expires_at, a.args_sha256, a.arguments FROM approvals a "
                "JOIN conversations c ON c.id = a.conversation "
                "WHERE a.turn_id = ? AND a.call_id = ? AND c.tenant_id = ? AND c.user_id = ? "
                "AND c.conversation_id = COALESCE(?, c.conversation_id)",
                (answer.turn_id, answer.call_id, answer.tenant_id, answer.user_id, answer.conversation_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no approval {answer.call_id} of turn {answer.turn_id} for this user")
            approval_id, conversation_id, state, expires_at, stored, arguments = row
            found = ApprovalRecord(
                conversation_id,
                answer.turn_id,
                answer.call_id,
                cast(ApprovalState, state),
                args_sha256=kept_digest(stored, arguments),
            )
            if state != "pending" or found.args_sha256 != answer.args_sha256:
                return found
            decided: ApprovalState = "expired" if now > expires_at else "approved" if answer.approved else "denied"
            db.execute("UPDATE approvals SET state = ?, decided_at = ? WHERE id = ?", (decided, now, approval_id))
        return ApprovalRecord(
            conversation_id, answer.turn_id, answer.call_id, decided, decided != "expired", found.args_sha256
        )

    async def take_tool_token(self, scope: Scope, tool: str, per_minute: int, now: float) -> TokenTaken:
        return await self._run(self._take_tool_token, scope, tool, per_minute, now)

    def _take_tool_token(self, scope: Scope, tool: str, per_minute: int, now: float) -> TokenTaken:
        window = token_window(now)
        with self._tx() as db:
            self._owned(db, scope)
            if per_minute <= 0:
                return TokenTaken(True)
            # A new window (or a clock that stepped back) starts the count again at 1.
            (used,) = db.execute(
                "INSERT INTO tool_tokens (tenant_id, user_id, tool, window_start, used) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (tenant_id, user_id, tool) DO UPDATE SET "
                "used = CASE WHEN window_start = excluded.window_start THEN used + 1 ELSE 1 END, "
                "window_start = excluded.window_start RETURNING used",
                (scope.tenant_id, scope.user_id, tool, window),
            ).fetchone()
        if used <= per_minute:
            return TokenTaken(True)
        return TokenTaken(False, retry_after_seconds=max(0.0, window + TOKEN_WINDOW_SECONDS - now))
