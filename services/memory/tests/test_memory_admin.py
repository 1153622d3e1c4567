"""agentry-memory-admin: reasoning for operators only, erasure of a user (every backend)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from agentry_memory.store import Store
from agentry_memory.store.sqlite import SqliteStore
from agentry_memory.upkeep.admin import main, parser, run
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope


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


async def test_the_command_uses_the_configured_store(
    tmp_path: Path, scope: Scope, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.close()
    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setenv("MEMORY_DATA_DIR", str(tmp_path))
    # main() runs its own event loop: off this test's loop, as on a command line.
    assert await asyncio.to_thread(main, ["erase-user", "--tenant", "acme", "--user", "alice"]) == 0
    assert json.loads(capsys.readouterr().out)["turns"] == 1
    with pytest.raises(SystemExit):
        parser().parse_args(["erase-user", "--tenant", "acme"])  # --user is required
