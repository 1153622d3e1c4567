"""Each replica of the reasoner and of memory does its share of the partitioned work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import metric
from tests.scale.conftest import PARTITIONS, assert_in_order_exclusive_once, run_turns, until_shared
from tests.stack import Stack, free_port

REASONERS = 3
MEMORIES = 2
TURNS = 300


@pytest.fixture
def wide_stack(tmp_path: Path) -> Iterator[Stack]:
    """3 reasoners and 2 memory processes (one SQLite file) on one namespace."""
    s = Stack(tmp_path, AGENTRY_PARTITIONS=str(PARTITIONS), REASONER_TOOL_CALLS_PER_MINUTE="0")
    try:
        s.start_all()
        for _ in range(REASONERS - 1):
            s.wait_ready(s.start("reasoner", port=free_port()))
        for _ in range(MEMORIES - 1):
            s.wait_ready(s.start("memory", port=free_port()))
        yield s
    finally:
        s.close()


async def test_every_replica_runs_its_share_of_300_conversations(wide_stack: Stack) -> None:
    # Started by hand next to a running stack, each replica takes its share within 10 s.
    await until_shared(wide_stack, "reasoner", REASONERS, timeout=10)
    await until_shared(wide_stack, "memory", MEMORIES, timeout=10)

    conversations = await run_turns(wide_stack, TURNS, turns_each=1, text="hello there", sockets=16)

    assert len(conversations) == TURNS
    for conversation in conversations:
        assert_in_order_exclusive_once(conversation, 1)
    reasoners = [metric(p, "agentry_reasoner_turns_total") for p in wide_stack.replicas("reasoner")]
    assert sum(reasoners) == TURNS
    assert all(0.20 * TURNS <= n <= 0.47 * TURNS for n in reasoners), reasoners
    # A turn is two log entries to memory: the user's turn, then the reasoner's frames.
    memories = [
        metric(p, 'agentry_memory_log_entries_total{kind="turn.requested",outcome="ok"}')
        for p in wide_stack.replicas("memory")
    ]
    assert sum(memories) == TURNS
    assert all(0.30 * TURNS <= n <= 0.70 * TURNS for n in memories), memories
