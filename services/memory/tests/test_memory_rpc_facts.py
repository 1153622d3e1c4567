"""The fact and task requests through MemoryRpc: what the remember / recall / task tools get."""

from __future__ import annotations

import pytest
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import Store
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.facts import (
    FACT_REPLY,
    FactRemembered,
    FactReply,
    FactsRecalled,
    ListTasks,
    RecallFacts,
    RememberFact,
    TaskList,
    TaskUpdated,
    UpdateTask,
)
from agentry_shared.contracts.memory import MemoryFailure
from agentry_shared.contracts.scope import Scope
from pydantic import BaseModel


@pytest.fixture
async def rpc(store: Store, scope: Scope) -> MemoryRpc:
    async def broadcast(_: ControlMessage) -> None:
        return None

    await store.claim_conversation(scope)
    return MemoryRpc(store, 40, broadcast=broadcast, clock=lambda: 1000.0)


async def ask(rpc: MemoryRpc, request: BaseModel | bytes) -> FactReply:
    body = request if isinstance(request, bytes) else request.model_dump_json().encode()
    return FACT_REPLY.validate_json(await rpc.handle(body))


async def test_remember_then_recall(rpc: MemoryRpc, scope: Scope) -> None:
    first = await ask(rpc, RememberFact(scope=scope, turn_id="t1", fact="I prefer tea", category="preference"))
    assert isinstance(first, FactRemembered) and first.created
    assert (first.fact.fact, first.fact.category, first.fact.turn_id, first.fact.confirmed_at) == (
        "I prefer tea",
        "preference",
        "t1",
        1000.0,
    )
    again = await ask(rpc, RememberFact(scope=scope, fact="i prefer tea."))
    assert isinstance(again, FactRemembered) and not again.created and again.fact.fact_id == first.fact.fact_id
    recalled = await ask(rpc, RecallFacts(scope=scope, query="tea"))
    assert isinstance(recalled, FactsRecalled) and [f.fact for f in recalled.facts] == ["i prefer tea."]
    nothing = await ask(rpc, RecallFacts(scope=scope, query="coffee"))
    assert nothing == FactsRecalled(facts=[])


async def test_task_progress(rpc: MemoryRpc, scope: Scope) -> None:
    created = await ask(rpc, UpdateTask(scope=scope, task="Port the docs", status="in_progress", progress="half"))
    assert isinstance(created, TaskUpdated) and created.created
    done = await ask(rpc, UpdateTask(scope=scope, task="port the docs", status="done"))
    assert isinstance(done, TaskUpdated) and not done.created and done.task.progress == "half"
    assert await ask(rpc, ListTasks(scope=scope)) == TaskList(tasks=[])
    listed = await ask(rpc, ListTasks(scope=scope, include_done=True))
    assert isinstance(listed, TaskList) and [(t.task, t.status) for t in listed.tasks] == [("port the docs", "done")]


async def test_fact_requests_fail_as_replies(rpc: MemoryRpc, scope: Scope) -> None:
    mallory = scope.model_copy(update={"user_id": "mallory"})
    cases: list[tuple[BaseModel | bytes, str]] = [
        (RememberFact(scope=mallory, fact="I prefer tea"), "forbidden"),
        (RecallFacts(scope=mallory, query="tea"), "forbidden"),
        (RecallFacts(scope=scope.model_copy(update={"conversation_id": "nope"}), query="tea"), "not_found"),
        (RememberFact(scope=scope, fact="?!"), "invalid"),
        (b'{"kind": "memory.remember_fact", "scope": {"tenant_id": "a"}}', "invalid"),
        (b'{"kind": "memory.remember_fact"}', "invalid"),
    ]
    for request, code in cases:
        reply = await ask(rpc, request)
        assert isinstance(reply, MemoryFailure) and reply.code == code, (request, reply)
    reply = await ask(rpc, b'{"kind": "memory.remember_fact", "scope": {"tenant_id": "a"}}')
    assert isinstance(reply, MemoryFailure) and "scope.user_id" in reply.message
    unknown = await ask(rpc, b'{"kind": "memory.drop_database"}')
    assert isinstance(unknown, MemoryFailure) and "memory.get_context" in unknown.message  # the shared kinds
