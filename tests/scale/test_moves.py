"""Replicas join, stop and die under load; every conversation keeps its guarantees."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentry_shared.testing import until

from tests.faults.conftest import metric
from tests.scale.conftest import PARTITIONS, assert_in_order_exclusive_once, run_turns, until_shared
from tests.stack import Proc, Stack, free_port

CONVERSATIONS = 20
TURNS_EACH = 5


@pytest.fixture
def moving_stack(tmp_path: Path) -> Iterator[Stack]:
    """A model slow enough that turns are in hand whenever a replica comes or goes."""
    s = Stack(
        tmp_path,
        AGENTRY_PARTITIONS=str(PARTITIONS),
        OFFLINE_MODEL_CHUNK_DELAY_MS="60",
        REASONER_TOOL_CALLS_PER_MINUTE="0",
        SHUTDOWN_GRACE_SECONDS="10",
    )
    try:
        s.start_all()
        s.wait_ready(s.start("reasoner", port=free_port()))
        s.wait_ready(s.start("memory", port=free_port()))
        yield s
    finally:
        s.close()


def in_flight(proc: Proc) -> float:
    return metric(proc, "agentry_reasoner_turns_in_flight")


async def _churn(stack: Stack) -> list[str]:
    """Add, SIGTERM and kill -9 reasoners and memory processes while the turns run."""
    done: list[str] = []

    async def step(what: str, delay: float) -> None:
        await asyncio.sleep(delay)
        # Each move is made with turns in hand, or it proves nothing about them.
        await until(lambda: any(in_flight(p) > 0 for p in stack.replicas("reasoner")), f"turns in hand at {what}")
        done.append(what)

    await step("start", 1.0)
    joined = stack.start("reasoner", port=free_port())
    await asyncio.to_thread(stack.wait_ready, joined)
    await until_shared(stack, "reasoner", 3, timeout=10)

    await step("sigterm reasoner", 1.0)
    leaving = max((p for p in stack.replicas("reasoner") if p is not joined), key=in_flight)
    assert await asyncio.to_thread(stack.terminate, leaving) == 0

    await step("kill -9 reasoner", 1.0)
    victim = max(stack.replicas("reasoner"), key=in_flight)
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    await until_shared(stack, "reasoner", 1, timeout=10)  # the survivor took every partition

    await step("kill -9 memory", 0.5)
    memory = stack.replicas("memory")[0]
    os.kill(memory.process.pid, signal.SIGKILL)
    memory.process.wait()
    fresh = stack.start("memory", port=free_port())
    await asyncio.to_thread(stack.wait_ready, fresh)
    await step("add reasoner", 0.5)
    await asyncio.to_thread(stack.wait_ready, stack.start("reasoner", port=free_port()))
    return done


async def test_turns_keep_order_and_exclusivity_while_replicas_come_and_go(moving_stack: Stack) -> None:
    load = asyncio.create_task(
        run_turns(moving_stack, CONVERSATIONS, TURNS_EACH, text="count to 45", sockets=CONVERSATIONS)
    )
    churn = await _churn(moving_stack)
    conversations = await asyncio.wait_for(load, 240)

    assert churn == ["start", "sigterm reasoner", "kill -9 reasoner", "kill -9 memory", "add reasoner"]
    assert len(conversations) == CONVERSATIONS
    for conversation in conversations:
        assert_in_order_exclusive_once(conversation, TURNS_EACH)
        answers = [f["text"] for f in conversation.frames if f["type"] == "turn.completed"]
        assert answers == [" ".join(str(i) for i in range(1, 46))] * TURNS_EACH
    await until_shared(moving_stack, "reasoner", 2, timeout=10)
    await until_shared(moving_stack, "memory", 2, timeout=10)
