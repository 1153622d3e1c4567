"""The default store: one SQLite file, every call on one dedicated worker thread.

The `Store` methods live in one module per kind of data (turns, the window and summary,
frames, tool calls, approvals, facts and tasks, the operator's side), all on the shared
plumbing of `embedded_base`. The UNIQUE keys of the schema (`embedded_schema`) are what
make redelivered writes harmless.
"""

from __future__ import annotations

from agentry_memory.embedded_admin import AdminTables
from agentry_memory.embedded_approvals import ApprovalTables
from agentry_memory.embedded_context import ContextTables
from agentry_memory.embedded_facts import FactTables
from agentry_memory.embedded_frames import FrameTables
from agentry_memory.embedded_tools import ToolCallTables
from agentry_memory.embedded_turns import TurnTables


class EmbeddedStore(TurnTables, ContextTables, FrameTables, ToolCallTables, ApprovalTables, FactTables, AdminTables):
    """`Store` on SQLite in `data_dir / "memory.sqlite3"` (WAL, fsync on commit)."""
