"""The default store: one SQLite file, every call on one dedicated worker thread.

SQLite has one writer at a time anyway; a single thread makes that explicit, keeps the
event loop free and lets each method be a plain synchronous transaction. The UNIQUE keys
of the schema are what make redelivered writes harmless.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agentry_shared.contracts.memory import ChatMessage
from agentry_shared.contracts.scope import Scope

from agentry_memory.embedded_schema import SCHEMA, SCHEMA_VERSION
from agentry_memory.errors import Forbidden, NotFound
from agentry_memory.store import drop_orphan_tools

T = TypeVar("T")


class EmbeddedStore:
    """`Store` on SQLite in `data_dir / "memory.sqlite3"` (WAL, fsync on commit)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "memory.sqlite3"
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    # ---- lifecycle and plumbing -----------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-sqlite")
        await self._run(self._open)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=False)
        self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _open(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # We ack the broker after commit: the commit must survive a power cut.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            db.close()
            raise RuntimeError(f"{self.path} has schema {version}, newer than this release's {SCHEMA_VERSION}")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic unit; a writer takes the lock up front so what it reads stays current."""
        if self._db is None:
            raise RuntimeError("store is not open")
        db = self._db
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT leaves it open; the next BEGIN would fail
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _owned(db: sqlite3.Connection, scope: Scope) -> int:
        row = db.execute(
            "SELECT id FROM conversations WHERE conversation_id = ? AND tenant_id = ? AND user_id = ?",
            (scope.conversation_id, scope.tenant_id, scope.user_id),
        ).fetchone()
        if row is not None:
            return int(row[0])
        if db.execute("SELECT 1 FROM conversations WHERE conversation_id = ?", (scope.conversation_id,)).fetchone():
            raise Forbidden(f"conversation {scope.conversation_id} belongs to someone else")
        raise NotFound(f"no conversation {scope.conversation_id}")

    @staticmethod
    def _create(db: sqlite3.Connection, scope: Scope) -> int:
        cursor = db.execute(
            "INSERT INTO conversations (conversation_id, tenant_id, user_id, created_at) VALUES (?, ?, ?, ?)",
            (scope.conversation_id, scope.tenant_id, scope.user_id, time.time()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _turn(db: sqlite3.Connection, conversation: int, turn_id: str) -> tuple[int, int]:
        """(row id, turn_index) of a turn of this conversation."""
        row = db.execute(
            "SELECT id, turn_index FROM turns WHERE conversation = ? AND turn_id = ?", (conversation, turn_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"no turn {turn_id} in this conversation")
        return int(row[0]), int(row[1])

    # ---- Store ----------------------------------------------------------------------

    async def claim_conversation(self, scope: Scope) -> bool:
        return await self._run(self._claim_conversation, scope)

    def _claim_conversation(self, scope: Scope) -> bool:
        with self._tx() as db:
            try:
                self._owned(db, scope)
            except NotFound:
                self._create(db, scope)
                return True
            return False

    async def add_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> int:
        return await self._run(self._add_turn, scope, turn_id, user_message)

    def _add_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage) -> int:
        with self._tx() as db:
            try:
                conversation = self._owned(db, scope)
            except NotFound:
                conversation = self._create(db, scope)
            row = db.execute("SELECT conversation, turn_index FROM turns WHERE turn_id = ?", (turn_id,)).fetchone()
            if row is not None:
                if row[0] != conversation:
                    raise Forbidden(f"turn {turn_id} belongs to another conversation")
                return int(row[1])
            (index,) = db.execute(
                "SELECT COALESCE(MAX(turn_index), 0) + 1 FROM turns WHERE conversation = ?", (conversation,)
            ).fetchone()
            db.execute(
                "INSERT INTO turns (conversation, turn_id, turn_index, created_at) VALUES (?, ?, ?, ?)",
                (conversation, turn_id, index, time.time()),
            )
            db.execute(
                "INSERT INTO messages (conversation, turn_index, position, body) VALUES (?, ?, 0, ?)",
                (conversation, index, user_message.model_dump_json(exclude_none=True)),
            )
            return int(index)

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        await self._run(self._append_messages, scope, turn_id, messages)

    def _append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        with self._tx() as db:
            conversation = self._owned(db, scope)
            _, index = self._turn(db, conversation, turn_id)
            db.executemany(
                "INSERT INTO messages (conversation, turn_index, position, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (conversation, turn_index, position) DO UPDATE SET body = excluded.body",
                [
                    (conversation, index, position, message.model_dump_json(exclude_none=True))
                    for position, message in enumerate(messages, start=1)
                ],
            )

    async def context(self, scope: Scope, turn_id: str, limit: int) -> list[ChatMessage]:
        return await self._run(self._context, scope, turn_id, limit)

    def _context(self, scope: Scope, turn_id: str, limit: int) -> list[ChatMessage]:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            _, index = self._turn(db, conversation, turn_id)
            rows = db.execute(
                "SELECT body FROM messages WHERE conversation = ? AND turn_index <= ? "
                "ORDER BY turn_index DESC, position DESC LIMIT ?",
                (conversation, index, limit),
            ).fetchall()
        return drop_orphan_tools([ChatMessage.model_validate_json(body) for (body,) in reversed(rows)])

    async def append_frame(self, scope: Scope, event_id: str, frame: dict[str, Any]) -> tuple[int, bool]:
        return await self._run(self._append_frame, scope, event_id, frame)

    def _append_frame(self, scope: Scope, event_id: str, frame: dict[str, Any]) -> tuple[int, bool]:
        with self._tx() as db:
            conversation = self._owned(db, scope)
            row = db.execute(
                "SELECT seq FROM frames WHERE conversation = ? AND event_id = ?", (conversation, event_id)
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM frames WHERE conversation = ?", (conversation,)
            ).fetchone()
            db.execute(
                "INSERT INTO frames (conversation, seq, event_id, body) VALUES (?, ?, ?, ?)",
                (conversation, seq, event_id, json.dumps({**frame, "seq": seq}, ensure_ascii=False)),
            )
            return int(seq), True

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        return await self._run(self._frames_after, scope, after_seq, limit)

    def _frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            rows = db.execute(
                "SELECT body FROM frames WHERE conversation = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conversation, after_seq, limit),
            ).fetchall()
        return [json.loads(body) for (body,) in rows]

    async def record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        await self._run(self._record_reasoning, scope, turn_id, step, text)

    def _record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        with self._tx() as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            db.execute(
                "INSERT INTO reasoning (turn, step, text) VALUES (?, ?, ?) "
                "ON CONFLICT (turn, step) DO UPDATE SET text = excluded.text",
                (turn, step, text),
            )

    async def reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        return await self._run(self._reasoning, scope, turn_id)

    def _reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        with self._tx(write=False) as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            rows = db.execute("SELECT text FROM reasoning WHERE turn = ? ORDER BY step", (turn,)).fetchall()
        return [text for (text,) in rows]
