"""The window of a turn and the conversation's rolling summary, on SQLite.

The window is read newest first with a cursor that stops at the budget, so its cost
follows the window's size, not the conversation's (10,000 messages cost what 40 do).
"""

from __future__ import annotations

import sqlite3

from agentry_shared.contracts.chat import ChatMessage, from_json
from agentry_shared.contracts.scope import Scope

from agentry_memory.context.windows import WholeTurns, Window
from agentry_memory.store.records import StoredMessage, Summary, TurnContext
from agentry_memory.store.sqlite.base import SqliteBase


class ContextTables(SqliteBase):
    async def context(self, scope: Scope, turn_id: str, limit: int, max_tokens: int | None = None) -> TurnContext:
        return await self._run(self._context, scope, turn_id, limit, max_tokens)

    def _context(self, scope: Scope, turn_id: str, limit: int, max_tokens: int | None) -> TurnContext:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            _, index = self._turn(db, conversation, turn_id)
            summary = _summary(db, conversation)
            budget = None if max_tokens is None else max_tokens - (summary.tokens if summary else 0)
            rows = db.execute(
                "SELECT turn_index, position, tokens, body FROM messages WHERE conversation = ? "
                "AND (turn_index < ? OR (turn_index = ? AND position = 0)) "
                "ORDER BY turn_index DESC, position DESC",
                (conversation, index, index),
            )
            window = Window(limit, budget)
            admitted: list[tuple[int, int, int, str]] = []
            for turn_index, position, tokens, body in rows:
                if not window.admit(int(turn_index), int(tokens)):
                    break
                admitted.append((int(turn_index), int(position), int(tokens), body))
            rows.close()
            produced = db.execute(
                "SELECT body FROM messages WHERE conversation = ? AND turn_index = ? AND position > 0 "
                "ORDER BY position",
                (conversation, index),
            ).fetchall()
        # Parsed once the window is known, all in one pass.
        parsed = from_json([body for *_, body in admitted])
        window.take([StoredMessage(t, p, k, m) for (t, p, k, _), m in zip(admitted, parsed, strict=True)])
        messages = window.messages()
        return TurnContext(
            window=messages,
            produced=from_json([body for (body,) in produced]),
            summary=summary,
            left_out_turn=window.left_out_turn,
        )

    async def summary(self, scope: Scope) -> Summary | None:
        return await self._run(self._summary_of, scope)

    def _summary_of(self, scope: Scope) -> Summary | None:
        with self._tx(write=False) as db:
            return _summary(db, self._owned(db, scope))

    async def unsummarised(
        self, scope: Scope, after_turn: int, through_turn: int, max_tokens: int
    ) -> list[StoredMessage]:
        return await self._run(self._unsummarised, scope, after_turn, through_turn, max_tokens)

    def _unsummarised(self, scope: Scope, after_turn: int, through_turn: int, max_tokens: int) -> list[StoredMessage]:
        batch = WholeTurns(max_tokens)
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT turn_index, position, tokens, body FROM messages WHERE conversation = ? "
                "AND turn_index > ? AND turn_index <= ? ORDER BY turn_index, position",
                (self._owned(db, scope), after_turn, through_turn),
            )
            for turn_index, position, tokens, body in rows:
                if not batch.offer(StoredMessage(turn_index, position, tokens, ChatMessage.model_validate_json(body))):
                    break
            rows.close()
        return batch.result()

    async def save_summary(self, scope: Scope, text: str, through_turn: int, tokens: int, now: float) -> bool:
        return await self._run(self._save_summary, scope, text, through_turn, tokens, now)

    def _save_summary(self, scope: Scope, text: str, through_turn: int, tokens: int, now: float) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO summaries (conversation, text, through_turn, tokens, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (conversation) DO UPDATE SET text = excluded.text, through_turn = excluded.through_turn, "
                "tokens = excluded.tokens, updated_at = excluded.updated_at "
                "WHERE excluded.through_turn > summaries.through_turn",
                (self._owned(db, scope), text, through_turn, tokens, now),
            )
            return cursor.rowcount > 0


def _summary(db: sqlite3.Connection, conversation: int) -> Summary | None:
    row = db.execute(
        "SELECT text, through_turn, tokens, updated_at FROM summaries WHERE conversation = ?", (conversation,)
    ).fetchone()
    return None if row is None else Summary(row[0], int(row[1]), int(row[2]), float(row[3]))
