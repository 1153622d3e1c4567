"""A user's conversations on SQLite, for the web page's list."""

from __future__ import annotations

from agentry_shared.contracts.frames import ConversationSummary

from agentry_memory.store.records import conversation_title
from agentry_memory.store.sqlite.base import SqliteBase

# One row per conversation of the user: its last activity (creation, newest turn's start
# or end) and its first user message (position 0 of its lowest turn).
_LIST = """
SELECT c.conversation_id, c.created_at,
       MAX(c.created_at, COALESCE(MAX(t.created_at), 0), COALESCE(MAX(t.finished_at), 0)) AS last_activity,
       (SELECT m.body FROM messages m WHERE m.conversation = c.id AND m.position = 0
        ORDER BY m.turn_index LIMIT 1) AS first_message
FROM conversations c LEFT JOIN turns t ON t.conversation = c.id
WHERE c.tenant_id = ? AND c.user_id = ?
GROUP BY c.id
ORDER BY last_activity DESC, c.conversation_id DESC
LIMIT ?
"""


class ConversationTables(SqliteBase):
    async def list_conversations(self, tenant_id: str, user_id: str, limit: int) -> list[ConversationSummary]:
        return await self._run(self._list_conversations, tenant_id, user_id, limit)

    def _list_conversations(self, tenant_id: str, user_id: str, limit: int) -> list[ConversationSummary]:
        with self._tx(write=False) as db:
            rows = db.execute(_LIST, (tenant_id, user_id, limit)).fetchall()
        return [
            ConversationSummary(
                conversation_id=conversation_id,
                created_at=float(created_at),
                last_activity_at=float(last_activity),
                title=conversation_title(first_message),
            )
            for conversation_id, created_at, last_activity, first_message in rows
        ]
