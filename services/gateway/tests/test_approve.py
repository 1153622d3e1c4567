"""`approve` against the real broker, with the memory stand-in of conftest (approvals
served from its dict; not the real memory service)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentry_gateway.server import Gateway
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import ApprovalState, DecideApproval
from agentry_shared.testing import NO_ARGUMENTS, until
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.tests.conftest import Broker, assert_silent, recv_json

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def approve(ws: ClientConnection, call_id: str, approved: bool, **fields: Any) -> None:
    """Answer the stand-in's `store_approval(call_id, …)`: its turn, its (empty) arguments."""
    echoed = {"turn_id": f"turn-{call_id}", "call_id": call_id, "args_sha256": NO_ARGUMENTS}
    await ws.send(json.dumps({"type": "approve", **echoed, "approved": approved, **fields}))


def state_of(broker: Broker, call_id: str) -> ApprovalState:
    return broker.memory.approvals[call_id].state


def accepted() -> float:
    return REGISTRY.get_sample_value("agentry_gateway_client_frames_total", {"outcome": "accepted"}) or 0.0


async def test_a_decision_is_sent_to_memory_and_not_answered(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    broker.memory.store_approval("call-yes", "abe", "approve-conv")
    broker.memory.store_approval("call-no", "abe", "approve-conv")
    before = accepted()
    async with connect(f"{gateway[1]}?user=abe") as ws:
        await approve(ws, "call-yes", True, id="a1")
        await approve(ws, "call-no", False)
        await until(lambda: accepted() == before + 2, "both decisions taken")  # handled: the silence means something
        await assert_silent(ws)  # the turn goes on through the conversation's stream
        await approve(ws, "call-yes", True, id="again")  # a retry: same answer, still nothing
        await until(lambda: accepted() == before + 3, "the retry taken")
        await assert_silent(ws)
    sent = [r for r in broker.memory.requests_of(DecideApproval) if r.user_id == "abe"]
    assert [(r.tenant_id, r.turn_id, r.call_id, r.args_sha256, r.approved) for r in sent] == [
        ("default", "turn-call-yes", "call-yes", NO_ARGUMENTS, True),
        ("default", "turn-call-no", "call-no", NO_ARGUMENTS, False),
        ("default", "turn-call-yes", "call-yes", NO_ARGUMENTS, True),
    ]
    assert (broker.memory.approvals["call-yes"].state, broker.memory.approvals["call-no"].state) == (
        "approved",
        "denied",
    )
    assert accepted() == before + 3


@pytest.mark.parametrize(("earlier", "asked"), [("approved", False), ("denied", True)])
async def test_already_decided_the_other_way(
    broker: Broker, gateway: tuple[Gateway, str], earlier: ApprovalState, asked: bool
) -> None:
    broker.memory.store_approval(f"call-{earlier}", "bea", "approve-decided", earlier)
    async with connect(f"{gateway[1]}?user=bea") as ws:
        await approve(ws, f"call-{earlier}", asked, id="b1")
        error = await recv_json(ws)
        assert (error["type"], error["code"], error["id"], error["conversation_id"]) == (
            "error",
            "approval_already_decided",
            "b1",
            "approve-decided",
        )
        assert earlier in error["message"]
    assert broker.memory.approvals[f"call-{earlier}"].state == earlier


@pytest.mark.parametrize("asked", [True, False])
async def test_too_late_is_expired(broker: Broker, gateway: tuple[Gateway, str], asked: bool) -> None:
    broker.memory.store_approval(f"call-late-{asked}", "cal", "approve-late", "expired")
    async with connect(f"{gateway[1]}?user=cal") as ws:
        await approve(ws, f"call-late-{asked}", asked, id="c1")
        error = await recv_json(ws)
        assert (error["code"], error["id"], error["conversation_id"]) == ("approval_expired", "c1", "approve-late")


async def test_approve_refusals(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    broker.memory.store_approval("call-of-other", "owner", "approve-conv")
    broker.memory.store_approval("call-slow", "dee", "approve-conv")
    broker.memory.late.add("call-slow")
    try:
        async with connect(f"{gateway[1]}?user=dee") as ws:
            await approve(ws, "never-asked", True, id="a")
            await approve(ws, "call-of-other", True, id="b")
            await approve(ws, "call-slow", True, id="c")
            await approve(ws, "x", "yes", id="d")  # type: ignore[arg-type]
            await approve(ws, "x", True, args_sha256="not-a-digest", id="e")
            codes = {frame["id"]: frame["code"] for frame in [await recv_json(ws) for _ in range(5)]}
            assert codes == {
                "a": "not_found",
                "b": "forbidden",
                "c": "unavailable",
                "d": "invalid_approve",
                "e": "invalid_approve",
            }
    finally:
        broker.memory.late.discard("call-slow")
    assert broker.memory.approvals["call-of-other"].state == "pending"


async def test_an_approve_names_its_turn_conversation_and_arguments(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    broker.memory.store_approval("call-named", "eve", "approve-named")
    async with connect(f"{gateway[1]}?user=eve") as ws:
        await approve(ws, "call-named", True, turn_id="turn-of-another", id="turn")
        await approve(ws, "call-named", True, conversation_id="approve-other", id="conv")
        await approve(ws, "call-named", True, args_sha256=arguments_sha256({"path": "/"}), id="args")
        errors = {frame["id"]: frame for frame in [await recv_json(ws) for _ in range(3)]}
        assert {key: frame["code"] for key, frame in errors.items()} == {
            "turn": "not_found",
            "conv": "not_found",
            "args": "approval_args_mismatch",
        }
        assert errors["args"]["conversation_id"] == "approve-named"
        assert state_of(broker, "call-named") == "pending"
        await approve(ws, "call-named", True, conversation_id="approve-named", id="ok")
        await assert_silent(ws)
    assert state_of(broker, "call-named") == "approved"


async def test_an_approve_without_turn_or_digest_says_what_to_send(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    """A client of before: `call_id` alone named no single call, and is refused, not guessed."""
    broker.memory.store_approval("call-old-client", "fay", "approve-old")
    async with connect(f"{gateway[1]}?user=fay") as ws:
        await ws.send(json.dumps({"type": "approve", "call_id": "call-old-client", "approved": True, "id": "old"}))
        only_turn = {"turn_id": "turn-call-old-client", "call_id": "call-old-client", "approved": True}
        await ws.send(json.dumps({"type": "approve", **only_turn, "id": "no-digest"}))
        for expected_id in ("old", "no-digest"):
            error = await recv_json(ws)
            assert (error["code"], error["id"]) == ("invalid_approve", expected_id)
            assert "turn_id" in error["message"] and "args_sha256" in error["message"]
            assert "tool.approval_required" in error["message"]
    assert broker.memory.approvals["call-old-client"].state == "pending"
    assert not [r for r in broker.memory.requests_of(DecideApproval) if r.user_id == "fay"]
