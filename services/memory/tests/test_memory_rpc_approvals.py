"""Approvals, tool rate limits and turn budgets through MemoryRpc: what the reasoner and gateway see."""

from __future__ import annotations

import time

import pytest
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import TOKEN_WINDOW_SECONDS, Store, token_window
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.control import ApprovalDecided, ControlMessage
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AdmitTurn,
    Approval,
    DecideApproval,
    Done,
    GetApproval,
    MemoryFailure,
    MemoryReply,
    RecordUsage,
    RequestApproval,
    TakeToolToken,
    ToolToken,
    TurnAdmission,
    TurnBudgets,
)
from agentry_shared.contracts.scope import Scope
from pydantic import BaseModel


class Clock:
    def __init__(self) -> None:
        self.now = token_window(time.time()) + 1

    def __call__(self) -> float:
        return self.now


class Control:
    def __init__(self) -> None:
        self.sent: list[ControlMessage] = []
        self.fail = False

    async def __call__(self, message: ControlMessage) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append(message)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def control() -> Control:
    return Control()


@pytest.fixture
async def rpc(store: Store, scope: Scope, control: Control, clock: Clock) -> MemoryRpc:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="delete notes.txt"))
    return MemoryRpc(store, window_messages=40, broadcast=control, clock=clock)


async def ask(rpc: MemoryRpc, request: BaseModel) -> MemoryReply:
    return MEMORY_REPLY.validate_json(await rpc.handle(request.model_dump_json().encode()))


SHOWN = arguments_sha256({"path": "notes.txt"})  # of `request`'s arguments


def approval(scope: Scope, state: str, turn_id: str = "t1", call_id: str = "c1", digest: str | None = None) -> Approval:
    return Approval.model_validate(
        {
            "conversation_id": scope.conversation_id,
            "turn_id": turn_id,
            "call_id": call_id,
            "state": state,
            "args_sha256": digest,
        }
    )


def decided(scope: Scope, state: str, turn_id: str = "t1") -> Approval:
    """The reply to a DecideApproval or a GetApproval of `request`'s call: with its digest."""
    return approval(scope, state, turn_id, digest=SHOWN)


def decide(approved: bool, turn_id: str = "t1", **fields: str) -> DecideApproval:
    named = {"tenant_id": "acme", "user_id": "alice", "call_id": "c1", "args_sha256": SHOWN, **fields}
    return DecideApproval.model_validate({**named, "turn_id": turn_id, "approved": approved})


def request(scope: Scope, clock: Clock, timeout: float = 120.0) -> RequestApproval:
    return RequestApproval(
        scope=scope,
        turn_id="t1",
        call_id="c1",
        tool="workspace_write",
        arguments={"path": "notes.txt"},
        expires_at=clock.now + timeout,
    )


async def test_the_reasoner_asks_and_the_user_approves(
    rpc: MemoryRpc, scope: Scope, control: Control, clock: Clock
) -> None:
    get = GetApproval(scope=scope, turn_id="t1", call_id="c1")
    assert await ask(rpc, get) == approval(scope, "pending")  # never asked reads pending, no digest
    assert await ask(rpc, request(scope, clock)) == Done()
    assert await ask(rpc, get) == decided(scope, "pending")
    assert await ask(rpc, decide(True)) == decided(scope, "approved")
    assert control.sent == [
        ApprovalDecided(conversation_id=scope.conversation_id, turn_id="t1", call_id="c1", approved=True)
    ]
    assert await ask(rpc, get) == decided(scope, "approved")
    assert await ask(rpc, decide(False)) == decided(scope, "approved")  # decided already: as it is, not broadcast
    assert len(control.sent) == 1


async def test_a_denial_is_broadcast_as_not_approved(
    rpc: MemoryRpc, scope: Scope, control: Control, clock: Clock
) -> None:
    await ask(rpc, request(scope, clock))
    assert await ask(rpc, decide(False)) == decided(scope, "denied")
    assert [m.approved for m in control.sent if isinstance(m, ApprovalDecided)] == [False]


async def test_too_late_is_expired_and_nobody_is_told(
    rpc: MemoryRpc, scope: Scope, control: Control, clock: Clock
) -> None:
    await ask(rpc, request(scope, clock, timeout=120))
    clock.now += 121
    assert await ask(rpc, GetApproval(scope=scope, turn_id="t1", call_id="c1")) == decided(scope, "expired")
    assert await ask(rpc, decide(True)) == decided(scope, "expired")
    assert control.sent == []  # the reasoner stopped waiting at the same deadline


async def test_a_lost_broadcast_still_answers_the_decision(
    rpc: MemoryRpc, scope: Scope, control: Control, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await ask(rpc, request(scope, clock))
    control.fail = True
    assert await ask(rpc, decide(True)) == decided(scope, "approved")  # recorded; the reasoner polls for it
    assert "not broadcast" in caplog.text


async def test_decisions_are_scoped_to_the_user(rpc: MemoryRpc, scope: Scope, clock: Clock) -> None:
    await ask(rpc, request(scope, clock))
    for tenant, user, call in [("acme", "mallory", "c1"), ("other", "alice", "c1"), ("acme", "alice", "c9")]:
        reply = await ask(rpc, decide(True, tenant_id=tenant, user_id=user, call_id=call))
        assert isinstance(reply, MemoryFailure) and reply.code == "not_found"
    mallory = scope.model_copy(update={"user_id": "mallory"})
    reply = await ask(rpc, GetApproval(scope=mallory, turn_id="t1", call_id="c1"))
    assert isinstance(reply, MemoryFailure) and reply.code == "forbidden"
    assert await ask(rpc, GetApproval(scope=scope, turn_id="t1", call_id="c1")) == decided(scope, "pending")


async def test_tool_tokens_per_minute(rpc: MemoryRpc, scope: Scope, clock: Clock) -> None:
    take = TakeToolToken(scope=scope, tool="python", per_minute=2)
    assert await ask(rpc, take) == ToolToken(allowed=True)
    assert await ask(rpc, take) == ToolToken(allowed=True)
    clock.now += 9
    refused = await ask(rpc, take)
    assert isinstance(refused, ToolToken) and not refused.allowed
    assert refused.retry_after_seconds == pytest.approx(TOKEN_WINDOW_SECONDS - 10)
    clock.now += TOKEN_WINDOW_SECONDS
    assert await ask(rpc, take) == ToolToken(allowed=True)
    unlimited = TakeToolToken(scope=scope, tool="python", per_minute=0)
    assert all([await ask(rpc, unlimited) == ToolToken(allowed=True) for _ in range(5)])


async def test_an_approve_decides_only_the_named_turns_call(
    rpc: MemoryRpc, store: Store, scope: Scope, control: Control, clock: Clock
) -> None:
    """Regression: two conversations of one user wait on the same model call id; the
    approve for the older one used to decide the newer one (memory picked the newest)."""
    other = scope.model_copy(update={"conversation_id": scope.conversation_id + "-b"})
    await store.add_turn(other, "t2", ChatMessage(role="user", content="delete notes.txt"))
    await ask(rpc, request(scope, clock))
    clock.now += 1
    await ask(rpc, request(other, clock).model_copy(update={"turn_id": "t2"}))
    approve_first = decide(True, conversation_id=scope.conversation_id)
    assert await ask(rpc, approve_first) == decided(scope, "approved")
    assert await ask(rpc, GetApproval(scope=other, turn_id="t2", call_id="c1")) == decided(other, "pending", "t2")
    assert [(m.conversation_id, m.turn_id) for m in control.sent] == [(scope.conversation_id, "t1")]


async def test_an_approve_for_other_arguments_is_not_recorded(
    rpc: MemoryRpc, scope: Scope, control: Control, clock: Clock
) -> None:
    await ask(rpc, request(scope, clock))
    other_args = arguments_sha256({"path": "important.txt"})
    assert await ask(rpc, decide(True, args_sha256=other_args)) == decided(scope, "pending")
    assert control.sent == []
    assert await ask(rpc, GetApproval(scope=scope, turn_id="t1", call_id="c1")) == decided(scope, "pending")


async def test_an_approve_must_name_its_turn_and_digest(rpc: MemoryRpc, scope: Scope, clock: Clock) -> None:
    """From a gateway of before: a call id alone is refused, never guessed."""
    await ask(rpc, request(scope, clock))
    old = {"tenant_id": "acme", "user_id": "alice", "call_id": "c1", "approved": True}
    for sent in (old, {**old, "turn_id": "t1"}, {**old, "args_sha256": SHOWN}):
        reply = await ask(rpc, DecideApproval.model_validate(sent))
        assert isinstance(reply, MemoryFailure) and reply.code == "invalid" and "turn_id" in reply.message
    wrong_conversation = decide(True, conversation_id=scope.conversation_id + "-x")
    reply = await ask(rpc, wrong_conversation)
    assert isinstance(reply, MemoryFailure) and reply.code == "not_found"
    assert await ask(rpc, GetApproval(scope=scope, turn_id="t1", call_id="c1")) == decided(scope, "pending")


async def test_turn_budgets_through_the_rpc(rpc: MemoryRpc, scope: Scope, clock: Clock) -> None:
    """What the gateway sees: AdmitTurn answers a TurnAdmission; RecordUsage counts tokens."""
    budgets = TurnBudgets(user_turns_per_minute=1, user_tokens_per_day=10)
    assert await ask(rpc, AdmitTurn(scope=scope, turn_id="n1", budgets=budgets)) == TurnAdmission(allowed=True)
    refused = await ask(rpc, AdmitTurn(scope=scope, turn_id="n2", budgets=budgets))
    assert isinstance(refused, TurnAdmission) and not refused.allowed
    assert (refused.code, refused.limit) == ("rate_limited", "BUDGET_USER_TURNS_PER_MINUTE")
    assert await ask(rpc, RecordUsage(scope=scope, turn_id="n1", tokens=10)) == Done()
    clock.now += TOKEN_WINDOW_SECONDS
    spent = await ask(rpc, AdmitTurn(scope=scope, turn_id="n2", budgets=budgets))
    assert isinstance(spent, TurnAdmission) and spent.code == "budget_exceeded" and spent.retry_after_seconds > 0
    mallory = scope.model_copy(update={"user_id": "mallory"})
    reply = await ask(rpc, AdmitTurn(scope=mallory, turn_id="m1", budgets=budgets))
    assert isinstance(reply, MemoryFailure) and reply.code == "forbidden"
    bad = await rpc.handle(b'{"kind": "memory.admit_turn", "budgets": {"user_turns_per_minute": -1}}')
    failure = MEMORY_REPLY.validate_json(bad)
    assert isinstance(failure, MemoryFailure) and failure.code == "invalid"
