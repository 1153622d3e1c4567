"""What is specific to the SQLite backend: where it keeps its file, and how."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from agentry_memory.context.tokens import message_tokens
from agentry_memory.store import Forbidden, TurnContext
from agentry_memory.store.sqlite import SqliteStore
from agentry_memory.store.sqlite.schema import SCHEMA_VERSION
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope


async def test_file_in_the_data_dir_in_wal_mode_off_the_loop_thread(tmp_path: Path, scope: Scope) -> None:
    store = SqliteStore(tmp_path / "nested" / "dir")
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


async def test_reads_made_together_go_to_the_thread_as_one_job_each_with_its_own_answer(
    tmp_path: Path, scope: Scope
) -> None:
    """A turn's context gathers three reads: one hand-off to the store's thread for all of
    them, and each caller still gets its own result, or its own error."""
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        await store.claim_conversation(scope)
        await store.add_turn(scope, "t1", ChatMessage(role="user", content="hello"))
        assert store._executor is not None
        jobs = 0
        submit = store._executor.submit

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal jobs
            jobs += 1
            return submit(*args, **kwargs)

        store._executor.submit = counted  # type: ignore[method-assign]
        stranger = Scope(tenant_id="acme", user_id="mallory", conversation_id=scope.conversation_id)
        context, refused, facts, tasks = await asyncio.gather(
            store.context(scope, "t1", 10),
            store.context(stranger, "t1", 10),
            store.recall_facts(scope, "hello", 5),
            store.tasks(scope, include_done=False, limit=5),
            return_exceptions=True,
        )
        assert jobs == 1
        assert isinstance(context, TurnContext) and [m.content for m in context.messages] == ["hello"]
        assert isinstance(refused, Forbidden)
        assert facts == [] and tasks == []
    finally:
        await store.close()


async def test_refuses_a_file_from_a_newer_release(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "memory.sqlite3")) as db:
        db.execute("PRAGMA user_version=99")
    store = SqliteStore(tmp_path)
    with pytest.raises(RuntimeError, match="newer"):
        await store.open()
    assert not store.is_open
    await store.close()


# The tables as release 1 (schema version 1) wrote them.
SCHEMA_V1 = """
CREATE TABLE conversations (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE turns (id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL REFERENCES conversations(id),
    turn_id TEXT NOT NULL UNIQUE, turn_index INTEGER NOT NULL, created_at REAL NOT NULL,
    UNIQUE (conversation, turn_index));
CREATE TABLE messages (conversation INTEGER NOT NULL REFERENCES conversations(id), turn_index INTEGER NOT NULL,
    position INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (conversation, turn_index, position));
CREATE TABLE frames (conversation INTEGER NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (conversation, seq), UNIQUE (conversation, event_id));
CREATE TABLE reasoning (turn INTEGER NOT NULL REFERENCES turns(id), step INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (turn, step));
PRAGMA user_version=1;
"""


def columns(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Each table's (column, notnull), in order."""
    with closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: [(row[1], row[3]) for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def frame(conversation_id: str, turn_id: str, kind: str, code: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"type": kind, "conversation_id": conversation_id, "turn_id": turn_id}
    if code is not None:
        body["error"] = {"code": code, "message": "x"}
    return body


async def test_a_release_1_file_is_upgraded_in_place(tmp_path: Path, scope: Scope) -> None:
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    old.mkdir()
    c = scope.conversation_id
    with closing(sqlite3.connect(old / "memory.sqlite3")) as db:
        db.executescript(SCHEMA_V1)
        db.execute("INSERT INTO conversations VALUES (1, ?, 'acme', 'alice', 0)", (c,))
        for index, turn_id in enumerate(["done", "stopped", "broken", "open"], start=1):
            db.execute("INSERT INTO turns VALUES (?, 1, ?, ?, 0)", (index, turn_id, index))
            db.execute(
                "INSERT INTO messages VALUES (1, ?, 0, ?)", (index, json.dumps({"role": "user", "content": "q"}))
            )
        rows = [
            ("done:accepted", frame(c, "done", "message.accepted")),
            ("done:end", frame(c, "done", "turn.completed")),
            ("stopped:end", frame(c, "stopped", "turn.failed", "cancelled")),
            ("broken:end", frame(c, "broken", "turn.failed", "internal")),
            ("broken:late", frame(c, "broken", "turn.completed")),
            ("open:accepted", frame(c, "open", "message.accepted")),
        ]
        db.executemany(
            "INSERT INTO frames VALUES (1, ?, ?, ?)",
            [(seq, event_id, json.dumps({**body, "seq": seq})) for seq, (event_id, body) in enumerate(rows, 1)],
        )
        db.commit()

    store = SqliteStore(old)
    await store.open()
    try:
        states = {t: (await store.turn_status(scope, t)) for t in ("done", "stopped", "broken", "open")}
        assert {t: s.state for t, s in states.items()} == {
            "done": "completed",
            "stopped": "cancelled",
            "broken": "failed",
            "open": "queued",
        }
        assert states["broken"].finished_by == "broken:end"
        assert await store.begin_turn(scope, "open") == (1, "running")
        assert [f["seq"] for f in await store.frames_after(scope, 0, 100)] == [1, 2, 3, 4, 5, 6]
        assert await store.sweep_frames(time.time() - 3600) == 0  # old frames age from the upgrade
        assert await store.append_frame(scope, "open:end", {"type": "turn.started"}) == (7, True)
        # Release 3: the kept messages got their token count, so the budget applies to them.
        window = (await store.context(scope, "open", limit=100, max_tokens=10**6)).window
        assert [m.tokens for m in window] == [message_tokens(ChatMessage(role="user", content="q"))] * 4
    finally:
        await store.close()
    with closing(sqlite3.connect(old / "memory.sqlite3")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

    new_store = SqliteStore(fresh)
    await new_store.open()
    await new_store.close()
    assert columns(old / "memory.sqlite3") == columns(fresh / "memory.sqlite3")


async def test_sweep_never_leaves_a_gap_when_the_clock_stepped_back(tmp_path: Path, scope: Scope) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        await store.claim_conversation(scope)
        for i in range(1, 6):
            await store.append_frame(scope, f"e{i}", {"type": "turn.started"})

        def backdate(db_path: Path = store.path) -> None:
            with closing(sqlite3.connect(db_path)) as db, db:
                db.execute("UPDATE frames SET created_at = 1000 WHERE seq = 3")  # written after a clock jump

        await store._run(backdate)
        assert await store.sweep_frames(time.time() - 3600) == 3  # 1 and 2 go with 3
        assert [f["seq"] for f in await store.frames_after(scope, 0, 100)] == [4, 5]
    finally:
        await store.close()
