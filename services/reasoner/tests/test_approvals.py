"""A decision kept by call id stands only for the arguments it was asked for: a resumed
turn whose model reuses the call id with new arguments is not approved by the old answer.
Real RabbitMQ; memory is `MemoryStandIn` (agentry_shared.testing)."""

from __future__ import annotations

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
from agentry_shared.testing import MemoryStandIn, delete_declared
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
