"""What is specific to the SQLite backend: where it keeps its file, and how."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from agentry_memory.embedded import EmbeddedStore
from agentry_shared.contracts.scope import Scope


async def test_file_in_the_data_dir_in_wal_mode_off_the_loop_thread(tmp_path: Path, scope: Scope) -> None:
    store = EmbeddedStore(tmp_path / "nested" / "dir")
    await store.open()
    try:
        await store.claim_conversation(scope)
        worker = await store._run(threading.get_ident)
        assert worker != threading.get_ident()
        assert await store._run(threading.get_ident) == worker  # always the same single thread
    finally:
        await store.close()
    path = tmp_path / "nested" / "dir" / "memory.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT tenant_id, user_id FROM conversations").fetchall() == [("acme", "alice")]


async def test_refuses_a_file_from_a_newer_release(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "memory.sqlite3")) as db:
        db.execute("PRAGMA user_version=99")
    store = EmbeddedStore(tmp_path)
    with pytest.raises(RuntimeError, match="newer"):
        await store.open()
    assert not store.is_open
    await store.close()
