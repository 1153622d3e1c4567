"""The default store (MONGODB_URL unset): one SQLite file, every call on one worker thread.

The `Store` methods live in one module per concern (turns, the window and summary,
frames, tool calls, approvals, facts and tasks, the operator's side), named as in
`store.mongo`, all on the shared plumbing of `base`. The UNIQUE keys of the schema
(`schema`) are what make redelivered writes harmless.
"""

from __future__ import annotations

from agentry_memory.store.sqlite.admin import AdminTables
from agentry_memory.store.sqlite.approvals import ApprovalTables
from agentry_memory.store.sqlite.budgets import BudgetTables
from agentry_memory.store.sqlite.context import ContextTables
from agentry_memory.store.sqlite.conversations import ConversationTables
from agentry_memory.store.sqlite.facts import FactTables
from agentry_memory.store.sqlite.frames import FrameTables
from agentry_memory.store.sqlite.tool_calls import ToolCallTables
from agentry_memory.store.sqlite.turns import TurnTables


class SqliteStore(
    TurnTables,
    ConversationTables,
    ContextTables,
    FrameTables,
    ToolCallTables,
    ApprovalTables,
    BudgetTables,
    FactTables,
    AdminTables,
):
    """`Store` on SQLite in `data_dir / "memory.sqlite3"` (WAL, fsync on commit)."""
