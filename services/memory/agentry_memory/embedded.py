"""The default store: one SQLite file, every call on one dedicated worker thread.

The `Store` methods live in one module per kind of data (turns, frames, tool calls), all
on the shared plumbing of `embedded_base`. The UNIQUE keys of the schema
(`embedded_schema`) are what make redelivered writes harmless.
"""

from __future__ import annotations

from agentry_memory.embedded_frames import FrameTables
from agentry_memory.embedded_tools import ToolCallTables
from agentry_memory.embedded_turns import TurnTables


class EmbeddedStore(TurnTables, FrameTables, ToolCallTables):
    """`Store` on SQLite in `data_dir / "memory.sqlite3"` (WAL, fsync on commit)."""
