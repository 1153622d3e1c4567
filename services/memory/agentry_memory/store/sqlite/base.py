"""The plumbing every part of `SqliteStore` shares: one file, one worker thread.

SQLite has one writer at a time anyway; a single thread makes that explicit, keeps the
event loop free and lets each method be a plain synchronous transaction.

Group commit: the hot writes (frames, turns, checkpoints, tool-call claims) go through
`_write`. Those that arrive while the thread is busy run together in one transaction,
each in a savepoint of its own (one failing rolls back only itself), and one COMMIT (one
fsync, synchronous=FULL) makes them all durable. No caller hears of its write before
that commit, so "ack after the effect is stored" holds for each of them.

Batched hand-off: the calls made in one pass of the event loop (the reads a turn's
context gathers, a group commit beside them) go to the thread as one job and come back
together: one wake-up of the thread and one of the loop for all of them, instead of one
each. In the same order as they were made, each with its own result or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agentry_shared.contracts.scope import Scope

from agentry_memory.context.tokens import body_tokens
from agentry_memory.store.errors import Forbidden, NotFound
from agentry_memory.store.sqlite.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")

# UPDATE ... RETURNING (3.35); UPDATE ... FROM, window functions and JSON in the upgrade.
MIN_SQLITE = (3, 35, 0)


def _has_fts5() -> bool:
    with contextlib.closing(sqlite3.connect(":memory:")) as probe:
        try:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        except sqlite3.OperationalError:
            return False
    return True


class SqliteBase:
    """Lifecycle, migrations, transactions and the scope checks every query starts with."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "memory.sqlite3"
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._group: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._grouping = False  # on the store's thread: inside _commit_group's transaction

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
        """`fn(*args)` on the store's thread, in the next batch (see the module's docstring)."""
        if self._executor is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._batch.append((functools.partial(fn, *args), future))
        if len(self._batch) == 1:  # the first of this pass: hand the batch over once the pass ends
            loop.call_soon(self._hand_over)
        return await future

    def _hand_over(self) -> None:
        batch, self._batch = self._batch, []
        try:
            if self._executor is None:
                raise RuntimeError("store is not open")
            job = asyncio.get_running_loop().run_in_executor(self._executor, _outcomes, [op for op, _ in batch])
        except RuntimeError as exc:  # closed meanwhile (or shutting down): nobody may wait for ever
            _settle(batch, [(False, exc)] * len(batch))
            return

        def done(job: asyncio.Future[list[tuple[bool, Any]]]) -> None:
            error = None if job.cancelled() else job.exception()
            if job.cancelled() or error is not None:
                _settle(batch, [(False, error or RuntimeError("store job cancelled"))] * len(batch))
            else:
                _settle(batch, job.result())

        job.add_done_callback(done)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the next group commit; its result once that group is durable."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._group.append((functools.partial(fn, *args), future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_groups())
        return await future

    async def _commit_groups(self) -> None:
        try:
            while self._group:
                group, self._group = self._group, []
                _settle(group, await self._run(self._commit_group, [op for op, _ in group]))
        except BaseException as exc:  # the store closed under us: nobody may wait for ever
            for _, future in self._group:
                if not future.done():
                    future.set_exception(RuntimeError(f"store write abandoned: {exc!r}"))
            self._group = []
            raise
        finally:
            self._committer = None

    def _commit_group(self, ops: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        if len(ops) == 1:  # its own transaction, as without grouping
            return [_outcome(ops[0])]
        if self._db is None:
            raise RuntimeError("store is not open")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._grouping = True
        try:
            outcomes = [_outcome(op) for op in ops]  # each op's _tx is a savepoint here
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [(False, exc)] * len(ops)
        finally:
            self._grouping = False
        return outcomes

    def _open(self) -> None:
        if self._db is not None:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old; the store needs 3.35 or later")
        if not _has_fts5():
            raise RuntimeError("this SQLite is built without FTS5, which the facts search needs")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # We ack the broker after commit: the commit must survive a power cut.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            # Token counts are computed in Python (tokens.py) by every writer, upgrade included.
            db.create_function("agentry_tokens", 1, body_tokens, deterministic=True)
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older file up to this release, each step in one transaction. Several
        memory processes may share the file: one at a time migrates (a lock file), so a
        second never repeats a step the first has just made."""
        with open(self.path.with_suffix(self.path.suffix + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._migrate_locked(db)

    def _migrate_locked(self, db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema {version}, newer than this release's {SCHEMA_VERSION}")
        # 0 is a fresh file: SCHEMA below creates the current tables directly.
        for target in range(version + 1, SCHEMA_VERSION + 1) if version > 0 else []:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={target}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
        if self._grouping:
            with _savepoint(db):
                yield db
            return
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


def _outcome(op: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, op()
    except Exception as exc:
        return False, exc


def _outcomes(ops: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    return [_outcome(op) for op in ops]


def _settle(batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue  # its caller left; what it did stands
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@contextmanager
def _savepoint(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("SAVEPOINT op")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK TO op")
        db.execute("RELEASE op")
        raise
    db.execute("RELEASE op")
