"""Conversations, turns and their messages on SQLite: the `Store` methods a reasoner uses
(the window they make up is `context`)."""

from __future__ import annotations

import sqlite3
import time
from typing import cast

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.memory import TurnState
from agentry_shared.contracts.scope import Scope

from agentry_memory.context.tokens import message_tokens
from agentry_memory.store.errors import Erased, Forbidden, LimitReached, NotFound
from agentry_memory.store.records import FINISHED, EncodedFrame, TurnStatus
from agentry_memory.store.sqlite.frames import FrameTables


class TurnTables(FrameTables):
    """Built on the frames: a turn's entry sequences its `message.accepted` in its commit."""

    async def claim_conversation(self, scope: Scope, *, create: bool = True, max_conversations: int = 0) -> bool:
        return await self._run(self._claim_conversation, scope, create, max_conversations)

    def _claim_conversation(self, scope: Scope, create: bool, max_conversations: int) -> bool:
        with self._tx() as db:
            try:
                self._owned(db, scope)
            except NotFound:
                if not create:
                    raise
                if max_conversations > 0:
                    (count,) = db.execute(
                        "SELECT COUNT(*) FROM conversations WHERE tenant_id = ? AND user_id = ?",
                        (scope.tenant_id, scope.user_id),
                    ).fetchone()
                    if count >= max_conversations:
                        raise LimitReached(f"the user has {count} conversations, the most allowed") from None
                self._create(db, scope)
                return True
            return False

    async def abandon_conversation(self, scope: Scope) -> bool:
        return await self._run(self._abandon_conversation, scope)

    def _abandon_conversation(self, scope: Scope) -> bool:
        with self._tx() as db:
            try:
                conversation = self._owned(db, scope)
            except NotFound:
                return True
            if db.execute("SELECT 1 FROM turns WHERE conversation = ? LIMIT 1", (conversation,)).fetchone():
                return False
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation,))
            return True

    async def add_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> int:
        return await self._write(self._add_turn, scope, turn_id, user_message, accepted_at)

    def _add_turn(self, scope: Scope, turn_id: str, user_message: ChatMessage, accepted_at: float | None) -> int:
        with self._tx() as db:
            _, index, _ = self._insert_turn(db, scope, turn_id, user_message, accepted_at)
            return index

    async def add_and_begin_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> bool:
        return await self._write(self._add_and_begin_turn, scope, turn_id, user_message, accepted_at)

    def _add_and_begin_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, accepted_at: float | None
    ) -> bool:
        with self._tx() as db:
            _, begun = self._add_and_begin(db, scope, turn_id, user_message, accepted_at)
            return begun

    async def enter_turn(
        self,
        scope: Scope,
        turn_id: str,
        user_message: ChatMessage,
        accepted: tuple[str, EncodedFrame],
        *,
        begin: bool,
        accepted_at: float | None = None,
    ) -> tuple[bool, tuple[int, bool]]:
        return await self._write(self._enter_turn, scope, turn_id, user_message, accepted, begin, accepted_at)

    def _enter_turn(
        self,
        scope: Scope,
        turn_id: str,
        user_message: ChatMessage,
        accepted: tuple[str, EncodedFrame],
        begin: bool,
        accepted_at: float | None,
    ) -> tuple[bool, tuple[int, bool]]:
        with self._tx() as db:
            if begin:
                conversation, begun = self._add_and_begin(db, scope, turn_id, user_message, accepted_at)
            else:
                (conversation, _, _), begun = self._insert_turn(db, scope, turn_id, user_message, accepted_at), False
            [stored] = self._sequence(db, conversation, [accepted])
            return begun, stored

    def _add_and_begin(
        self, db: sqlite3.Connection, scope: Scope, turn_id: str, user_message: ChatMessage, accepted_at: float | None
    ) -> tuple[int, bool]:
        """(conversation row, whether the turn was added now and begun)."""
        conversation, index, created = self._insert_turn(db, scope, turn_id, user_message, accepted_at)
        if not created:
            return conversation, False
        unfinished = db.execute(
            "SELECT 1 FROM turns WHERE conversation = ? AND turn_index < ? AND state IN ('queued', 'running') LIMIT 1",
            (conversation, index),
        ).fetchone()
        if unfinished is not None:
            return conversation, False
        db.execute(
            "UPDATE turns SET attempts = 1, state = 'running' WHERE conversation = ? AND turn_id = ?",
            (conversation, turn_id),
        )
        return conversation, True

    def _insert_turn(
        self, db: sqlite3.Connection, scope: Scope, turn_id: str, user_message: ChatMessage, accepted_at: float | None
    ) -> tuple[int, int, bool]:
        """(conversation row, turn_index, whether this call created the turn). `Erased` if
        the user was erased at or after `accepted_at`: checked in the transaction that
        writes, which an erasure's transaction cannot interleave with."""
        if accepted_at is not None:
            erased = db.execute(
                "SELECT erased_at FROM erasures WHERE tenant_id = ? AND user_id = ? AND erased_at >= ?",
                (scope.tenant_id, scope.user_id, accepted_at),
            ).fetchone()
            if erased is not None:
                raise Erased(f"user erased at {erased[0]}, after the turn was accepted at {accepted_at}")
        try:
            conversation = self._owned(db, scope)
        except NotFound:
            conversation = self._create(db, scope)
        row = db.execute("SELECT conversation, turn_index FROM turns WHERE turn_id = ?", (turn_id,)).fetchone()
        if row is not None:
            if row[0] != conversation:
                raise Forbidden(f"turn {turn_id} belongs to another conversation")
            return conversation, int(row[1]), False
        (index,) = db.execute(
            "SELECT COALESCE(MAX(turn_index), 0) + 1 FROM turns WHERE conversation = ?", (conversation,)
        ).fetchone()
        db.execute(
            "INSERT INTO turns (conversation, turn_id, turn_index, created_at) VALUES (?, ?, ?, ?)",
            (conversation, turn_id, index, time.time()),
        )
        db.execute(
            "INSERT INTO messages (conversation, turn_index, position, body, tokens) VALUES (?, ?, 0, ?, ?)",
            (conversation, index, user_message.model_dump_json(exclude_none=True), message_tokens(user_message)),
        )
        return conversation, int(index), True

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        await self._write(self._append_messages, scope, turn_id, messages)

    def _append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        with self._tx() as db:
            conversation = self._owned(db, scope)
            _, index = self._turn(db, conversation, turn_id)
            db.executemany(
                "INSERT INTO messages (conversation, turn_index, position, body, tokens) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (conversation, turn_index, position) DO UPDATE "
                "SET body = excluded.body, tokens = excluded.tokens",
                [
                    (conversation, index, position, message.model_dump_json(exclude_none=True), message_tokens(message))
                    for position, message in enumerate(messages, start=1)
                ],
            )
            # The list is the whole checkpoint: what an older, longer one left behind goes.
            db.execute(
                "DELETE FROM messages WHERE conversation = ? AND turn_index = ? AND position > ?",
                (conversation, index, len(messages)),
            )

    async def begin_turn(self, scope: Scope, turn_id: str) -> tuple[int, TurnState]:
        return await self._write(self._begin_turn, scope, turn_id)

    def _begin_turn(self, scope: Scope, turn_id: str) -> tuple[int, TurnState]:
        with self._tx() as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            (attempts, state, cancel_requested_at) = db.execute(
                "UPDATE turns SET attempts = attempts + 1 WHERE id = ? RETURNING attempts, state, cancel_requested_at",
                (turn,),
            ).fetchone()
            if state in FINISHED:
                return int(attempts), cast(TurnState, state)
            if cancel_requested_at is not None:
                return int(attempts), "cancelled"
            db.execute("UPDATE turns SET state = 'running' WHERE id = ?", (turn,))
            return int(attempts), "running"

    async def turn_status(self, scope: Scope, turn_id: str) -> TurnStatus:
        return await self._run(self._turn_status, scope, turn_id)

    def _turn_status(self, scope: Scope, turn_id: str) -> TurnStatus:
        with self._tx(write=False) as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            return _status(db, turn)

    async def earlier_turn_running(self, scope: Scope, turn_id: str) -> bool:
        return await self._run(self._earlier_turn_running, scope, turn_id)

    def _earlier_turn_running(self, scope: Scope, turn_id: str) -> bool:
        with self._tx(write=False) as db:
            conversation = self._owned(db, scope)
            _, index = self._turn(db, conversation, turn_id)
            row = db.execute(
                "SELECT 1 FROM turns WHERE conversation = ? AND turn_index < ? AND state = 'running' LIMIT 1",
                (conversation, index),
            ).fetchone()
            return row is not None

    async def cancel_turn(self, tenant_id: str, user_id: str, turn_id: str) -> TurnStatus:
        return await self._run(self._cancel_turn, tenant_id, user_id, turn_id)

    def _cancel_turn(self, tenant_id: str, user_id: str, turn_id: str) -> TurnStatus:
        with self._tx() as db:
            row = db.execute(
                "SELECT turns.id, c.tenant_id, c.user_id FROM turns JOIN conversations c ON c.id = turns.conversation "
                "WHERE turns.turn_id = ?",
                (turn_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no turn {turn_id}")
            turn, owner = int(row[0]), (row[1], row[2])
            if owner != (tenant_id, user_id):
                raise Forbidden(f"turn {turn_id} belongs to someone else")
            before = _status(db, turn)
            if before.state not in FINISHED:
                db.execute(
                    "UPDATE turns SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?",
                    (time.time(), turn),
                )
            return before

    async def record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        await self._write(self._record_reasoning, scope, turn_id, step, text)

    def _record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        with self._tx() as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            db.execute(
                "INSERT INTO reasoning (turn, step, text, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (turn, step) DO UPDATE SET text = excluded.text",
                (turn, step, text, time.time()),
            )

    async def reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        return await self._run(self._reasoning, scope, turn_id)

    def _reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        with self._tx(write=False) as db:
            turn, _ = self._turn(db, self._owned(db, scope), turn_id)
            rows = db.execute("SELECT text FROM reasoning WHERE turn = ? ORDER BY step", (turn,)).fetchall()
        return [text for (text,) in rows]


def _status(db: sqlite3.Connection, turn: int) -> TurnStatus:
    row = db.execute(
        "SELECT c.conversation_id, turns.state, turns.attempts, turns.cancel_requested_at, turns.finished_by "
        "FROM turns JOIN conversations c ON c.id = turns.conversation WHERE turns.id = ?",
        (turn,),
    ).fetchone()
    conversation_id, state, attempts, cancel_requested_at, finished_by = row
    return TurnStatus(
        conversation_id=conversation_id,
        state=cast(TurnState, state),
        attempts=int(attempts),
        cancel_requested=cancel_requested_at is not None,
        finished_by=finished_by,
    )
