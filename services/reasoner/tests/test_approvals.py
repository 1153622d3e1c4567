"""A decision kept by call id stands only for the arguments it was asked for: a resumed
turn whose model reuses the call id with new arguments is not approved by the old answer.
Real RabbitMQ; memory is `MemoryStandIn` (agentry_shared.testing)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
import pytest_asyncio
from agentry_reasoner.approvals import ApprovalBoard, BrokerApprovals
from agentry_shared.bus import Bus
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.scope import Scope
from agentry_shared.testing import MemoryStandIn, delete_declared, until
from agentry_shared.topology import Topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SCOPE = Scope(tenant_id="default", user_id="alice", conversation_id="c-1")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def memory() -> AsyncIterator[MemoryStandIn]:
    topology = Topology(f"t{uuid.uuid4().hex}", 1)
    bus = Bus(AMQP_URL, topology, name="reasoner-approval-tests")
    await bus.connect()
    stand_in = MemoryStandIn(bus)
    try:
        await stand_in.start()
        yield stand_in
    finally:
        await bus.close()
        async with await aio_pika.connect(AMQP_URL) as connection:
            await delete_declared(await connection.channel(), topology)  # the stand-in's bus declared them all


def approvals(memory: MemoryStandIn, call_id: str) -> BrokerApprovals:
    return BrokerApprovals(memory.bus, ApprovalBoard(), SCOPE, f"turn-{call_id}")


async def test_a_decision_stands_for_the_arguments_it_was_asked_for(memory: MemoryStandIn) -> None:
    kept = memory.store_approval("call_1", "alice", "c-1", "approved")
    kept.args_sha256 = arguments_sha256({"path": "notes.txt"})
    assert await approvals(memory, "call_1").decision("call_1", {"path": "notes.txt"}) is True


async def test_an_old_approval_does_not_cover_new_arguments(memory: MemoryStandIn) -> None:
    kept = memory.store_approval("call_2", "alice", "c-1", "approved")
    kept.args_sha256 = arguments_sha256({"path": "notes.txt"})
    asked = approvals(memory, "call_2")
    assert await asked.decision("call_2", {"path": "/etc/passwd"}) is False
    assert await asked.ask("workspace_write", "call_2", {"path": "/etc/passwd"}, timeout_s=5) is False


async def test_a_call_never_asked_is_undecided(memory: MemoryStandIn) -> None:
    assert await approvals(memory, "call_3").decision("call_3", {"path": "a"}) is None


def held(board: ApprovalBoard) -> int:
    """The calls the board holds something for (a wait or a decision)."""
    return len(board._events.keys() | board._decisions.keys())


async def test_the_board_keeps_only_decisions_it_waits_for() -> None:
    """Before: every replica kept every decision it heard (the control exchange is a fanout),
    and a call decided after its wait ended (answered twice, answered late) stayed too: the
    board grew for as long as the replica ran."""
    board = ApprovalBoard()
    board.decided("turn-other", "call_1", True)  # another replica's call
    assert held(board) == 0
    board.expect("turn-ours", "call_2")
    board.decided("turn-ours", "call_2", False)
    assert await board.wait("turn-ours", "call_2", timeout_s=5) is False
    board.forget("turn-ours", "call_2")
    board.decided("turn-ours", "call_2", True)  # a second answer, after the wait ended
    assert held(board) == 0


async def test_a_broadcast_decision_ends_the_wait_and_is_then_forgotten(memory: MemoryStandIn) -> None:
    board = ApprovalBoard()
    asked = BrokerApprovals(memory.bus, board, SCOPE, "turn-call_4")
    waiting = asyncio.create_task(asked.ask("workspace_write", "call_4", {"path": "a"}, timeout_s=30))
    await until(lambda: held(board) == 1, "the reasoner waits for the decision")
    board.decided("turn-call_4", "call_4", True)
    assert await asyncio.wait_for(waiting, 10) is True
    assert held(board) == 0
