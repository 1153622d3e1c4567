"""agentry-memory-admin: reasoning for operators only, erasure of a user (every backend)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agentry_memory.log.sequencer import ConversationLog
from agentry_memory.store import Erased, Store
from agentry_memory.store.mongo import MongoStore
from agentry_memory.store.records import token_window
from agentry_memory.store.sqlite import SqliteStore
from agentry_memory.upkeep.admin import main, parser, run
from agentry_shared.bus import HANDLED_DEAD_LETTERS, Bus, encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import MessageDelta
from agentry_shared.contracts.memory import TurnBudgets
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.dead_letters import HANDLED_AT, HANDLED_KIND, HANDLED_OUTCOME
from agentry_shared.settings import MemorySettings
from agentry_shared.topology import Topology

# SQLite's FTS5 bookkeeping: its row counts follow the index's segments, not the facts.
FTS_INTERNALS = ("facts_fts_data", "facts_fts_idx", "facts_fts_config")
ERASURES = "erasures"


async def test_reasoning_is_printed_one_json_line_per_step(
    store: Store, scope: Scope, capsys: pytest.CaptureFixture[str]
) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.record_reasoning(scope, "t1", 0, "[reasoning] greet")
    await store.record_reasoning(scope, "t1", 1, "[reasoning] answer")
    args = parser().parse_args(["reasoning", "--tenant", "acme", "--user", "alice", "--turn", "t1"])
    assert await run(store, args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["step"], line["text"]) for line in lines] == [(0, "[reasoning] greet"), (1, "[reasoning] answer")]

    await store.open()
    someone_else = parser().parse_args(["reasoning", "--tenant", "acme", "--user", "bob", "--turn", "t1"])
    assert await run(store, someone_else) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not found" in captured.err


async def test_erase_user_prints_what_it_deleted(
    store: Store, scope: Scope, capsys: pytest.CaptureFixture[str]
) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.remember_fact(scope, "t1", "I prefer tea", "preference", 1.0)
    args = parser().parse_args(["erase-user", "--tenant", "acme", "--user", "alice"])
    assert await run(store, args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["conversations"], counts["turns"], counts["messages"], counts["facts"]) == (1, 1, 1, 1)


async def everything_about(store: Store, scope: Scope, turn_id: str) -> None:
    """One record of every kind the store keeps about a user (the test below fails on a
    table or collection this leaves empty, so a new kind must be added here)."""
    now = token_window(time.time()) + 10  # counted in this minute's window
    budgets = TurnBudgets(user_turns_per_minute=100, user_concurrent_turns=10, user_tokens_per_day=10_000)
    await store.claim_conversation(scope)
    assert (await store.admit_turn(scope, turn_id, budgets, now)).allowed  # turn_admissions, budget_counts
    await store.add_turn(scope, turn_id, ChatMessage(role="user", content="my card is 4111"))
    await store.append_messages(scope, turn_id, [ChatMessage(role="assistant", content="noted")])
    delta = MessageDelta(conversation_id=scope.conversation_id, turn_id=turn_id, text="noted")
    await store.append_frames(scope, [(f"{turn_id}:delta", delta.model_dump(mode="json"))])
    await store.save_summary(scope, "they shared a card", 1, 5, now)
    await store.record_reasoning(scope, turn_id, 0, "[reasoning] a card number")
    await store.claim_tool_call(scope, turn_id, "call-1", "calculator")
    await store.complete_tool_call(scope, turn_id, "call-1", {"value": 4111})
    await store.request_approval(scope, turn_id, "call-2", "delete_file", {"path": "/x"}, now + 60)
    assert (await store.take_tool_token(scope, "calculator", 10, now)).allowed  # tool_tokens (rate limit)
    await store.record_usage(scope, 42, now)  # budget_counts: tokens of the day
    await store.remember_fact(scope, turn_id, "card ends in 4111", "preference", now)
    await store.update_task(scope, turn_id, "Cancel the card", "open", "called the bank", now)


async def rows(store: Store) -> dict[str, int]:
    """How many rows each table (documents each collection) of the store holds."""
    if isinstance(store, SqliteStore):
        db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
        try:
            names = [
                name
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not name.startswith("sqlite_") and name not in FTS_INTERNALS
            ]
            return {name: db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] for name in names}
        finally:
            db.close()
    assert isinstance(store, MongoStore) and store._db is not None
    database = store._db
    return {name: await database[name].count_documents({}) for name in await database.list_collection_names()}


async def kept_dead_letter(broker: Bus, scope: Scope, turn_id: str) -> bytes:
    """A dead turn as memory keeps it in `<ns>.dead.handled`: the user's text in it."""
    body = encode(turn(scope, turn_id, time.time()))
    headers = {HANDLED_OUTCOME: "turn_failed", HANDLED_KIND: "turn.requested", HANDLED_AT: "2025-01-01T00:00:00"}
    await broker.publish(broker.topology.handled_dead_letter_exchange, "", body, headers=headers)
    return body


async def handled_letters(broker: Bus) -> list[bytes]:
    """What `<ns>.dead.handled` holds, in order (taken: the test is over with them)."""
    channel = await broker.channel(prefetch=1)
    queue = await channel.declare_queue(broker.topology.handled_dead_letter_queue, passive=True)
    letters = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        letters.append(message.body)
    return letters


async def test_erase_user_leaves_nothing_of_the_user_and_all_of_the_others(
    store: Store, scope: Scope, broker: Bus
) -> None:
    channel = await broker.channel(prefetch=1)  # <ns>.dead.handled, as memory declares it
    handled = await channel.declare_queue(
        broker.topology.handled_dead_letter_queue, durable=True, arguments=HANDLED_DEAD_LETTERS
    )
    await handled.bind(broker.topology.handled_dead_letter_exchange)
    bob = scope.model_copy(update={"user_id": "bob", "conversation_id": f"{scope.conversation_id}-bob"})
    await everything_about(store, bob, "bob-t1")
    bobs_letters = [await kept_dead_letter(broker, bob, "bob-dead-1")]
    without_alice = await rows(store)
    await everything_about(store, scope, "alice-t1")
    await kept_dead_letter(broker, scope, "alice-dead-1")
    bobs_letters.append(await kept_dead_letter(broker, bob, "bob-dead-2"))
    await kept_dead_letter(broker, scope, "alice-dead-2")
    with_alice = await rows(store)
    # Every kind of record is there to be erased (the erasures aside: only erase-user writes one).
    assert {name for name, count in with_alice.items() if count == without_alice.get(name, 0)} <= {ERASURES}

    settings = MemorySettings(agentry_namespace=broker.topology.namespace, agentry_partitions=2)
    args = parser().parse_args(["erase-user", "--tenant", "acme", "--user", "alice"])
    assert await run(store, args, settings) == 0
    assert await handled_letters(broker) == bobs_letters  # the others' kept, in their order
    await store.open()
    left = await rows(store)
    assert left.pop(ERASURES) == 1  # the one record kept: tenant, user and when
    assert left == {name: count for name, count in without_alice.items() if name != ERASURES}
    assert await store.erased_at("acme", "alice") is not None and await store.erased_at("acme", "bob") is None
    assert [f.text for f in await store.recall_facts(bob, "card", 5)] == ["card ends in 4111"]
    assert len((await store.context(bob, "bob-t1", 10)).produced) == 1


async def test_the_command_uses_the_configured_store(
    tmp_path: Path, scope: Scope, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.close()
    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setenv("MEMORY_DATA_DIR", str(tmp_path))
    # A namespace where no memory ever ran: no dead letters to purge, none declared.
    monkeypatch.setenv("AGENTRY_NAMESPACE", f"t{uuid.uuid4().hex}")
    # main() runs its own event loop: off this test's loop, as on a command line.
    assert await asyncio.to_thread(main, ["erase-user", "--tenant", "acme", "--user", "alice"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["turns"], printed["dead_letters"]) == (1, 0)
    with pytest.raises(SystemExit):
        parser().parse_args(["erase-user", "--tenant", "acme"])  # --user is required


def turn(scope: Scope, turn_id: str, accepted_at: float) -> TurnRequested:
    return TurnRequested(
        scope=scope, turn_id=turn_id, text="my card is 4111", accepted_at=datetime.fromtimestamp(accepted_at, UTC)
    )


async def test_a_turn_accepted_before_the_erasure_does_not_bring_the_user_back(store: Store, scope: Scope) -> None:
    log = ConversationLog(store, Topology("test", 4))
    accepted = time.time()  # by the gateway; still in the log when the operator erases
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.erase_user("acme", "alice")
    erased_at = await store.erased_at("acme", "alice")
    assert erased_at is not None and erased_at >= accepted

    assert await log.ingest(turn(scope, "t2", accepted)) == []  # dropped, and acked
    with pytest.raises(Erased):  # dead-lettered meanwhile: no poison frame, no conversation
        await log.fail_dead_turn(turn(scope, "t3", accepted))
    assert await store.list_conversations("acme", "alice", 10) == []
    assert {name: count for name, count in (await rows(store)).items() if count and name != ERASURES} == {}

    # The user comes back: what they send after the erasure is theirs again.
    await log.ingest(turn(scope, "t4", erased_at + 1))
    assert [c.conversation_id for c in await store.list_conversations("acme", "alice", 10)] == [scope.conversation_id]


async def test_an_erasure_at_any_moment_of_a_turn_being_stored_leaves_nothing(store: Store, scope: Scope) -> None:
    """The erasure runs while the log stores a turn accepted before it, started at every
    step of the store's writes in turn: whichever wins, nothing of the user is left."""
    log = ConversationLog(store, Topology("test", 4))
    for steps in range(40):
        conversation = scope.model_copy(update={"conversation_id": f"{scope.conversation_id}-{steps}"})
        storing = asyncio.ensure_future(log.ingest(turn(conversation, f"t{steps}", time.time())))
        for _ in range(steps):
            await asyncio.sleep(0)  # the fake MongoDB yields once per operation
        await store.erase_user("acme", "alice")
        await storing  # stored before the erasure (then erased), or dropped
        left = {name: count for name, count in (await rows(store)).items() if count and name != ERASURES}
        assert left == {}, f"erasing after {steps} steps left {left}"
