"""The default store: one SQLite file, every call on one dedicated worker thread.

The `Store` methods live in one module per kind of data (turns, the window and summary,
frames, tool calls, approvals, facts and tasks, the operator's side), all on the shared
plumbing of `embedded_base`. The UNIQUE keys of the schema (`embedded_schema`) are what
make redelivered writes harmless.
"""

from __future__ import annotations

from agentry_memory.store.sqlite.admin import AdminTables
from agentry_memory.store.sqlite.approvals import ApprovalTables
from agentry_memory.store.sqlite.context import ContextTables
from agentry_memory.store.sqlite.facts import FactTables
from agentry_memory.store.sqlite.frames import FrameTables
from agentry_memory.store.sqlite.tool_calls import ToolCallTables
from agentry_memory.store.sqlite.turns import TurnTables


class EmbeddedStore(TurnTables, ContextTables, FrameTables, ToolCallTables, ApprovalTables, FactTables, AdminTables):
    """`Store` on SQLite in `data_dir / "memory.sqlite3"` (WAL, fsync on commit)."""
