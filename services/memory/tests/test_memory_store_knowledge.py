"""The `Store` contract for facts, tasks, the reasoning audit and erasure (every backend)."""

from __future__ import annotations

import time

import pytest
from agentry_memory.store import ApprovalAnswer, Store, knowledge
from agentry_memory.store.errors import Forbidden, Invalid, NotFound
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.scope import Scope


def other_conversation(scope: Scope, **changes: str) -> Scope:
    suffix = "-".join(changes.values()) or "2"
    return scope.model_copy(update={"conversation_id": f"{scope.conversation_id}-{suffix}", **changes})


async def texts(store: Store, scope: Scope, query: str, limit: int = 10) -> list[str]:
    return [fact.text for fact in await store.recall_facts(scope, query, limit)]


async def test_a_fact_is_kept_once_and_refreshed_when_told_again(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    fact, created = await store.remember_fact(scope, "t1", "I prefer green tea", "preference", 1000.0)
    assert created and (fact.text, fact.category, fact.turn_id) == ("I prefer green tea", "preference", "t1")
    assert (fact.conversation_id, fact.created_at, fact.confirmed_at) == (scope.conversation_id, 1000.0, 1000.0)
    later = other_conversation(scope)
    await store.claim_conversation(later)
    again, created = await store.remember_fact(later, "t9", "i prefer  green-tea!", "other", 2000.0)
    assert not created and again.fact_id == fact.fact_id
    assert (again.text, again.category, again.turn_id, again.conversation_id) == (
        "i prefer green-tea!",
        "other",
        "t9",
        later.conversation_id,
    )
    assert (again.created_at, again.confirmed_at) == (1000.0, 2000.0)
    near, created = await store.remember_fact(scope, "t10", "I prefer green teas", "preference", 3000.0)
    assert not created and near.fact_id == fact.fact_id  # a near-identical wording is the same fact
    other, created = await store.remember_fact(scope, None, "I prefer black coffee", "preference", 3000.0)
    assert created and other.fact_id != fact.fact_id
    assert len(await store.recall_facts(scope, "", 10)) == 2


DIFFERENT_FACTS = [  # each pair: two things, though one character or word apart
    ("My daughter Alice is allergic to peanuts", "My daughter Alice is allergic to walnuts"),
    ("My son is allergic to peanuts", "My son is not allergic to peanuts"),
    ("My son likes spinach", "My son dislikes spinach"),
    ("Our preferred deployment region is eu-west-1", "Our preferred deployment region is eu-west-2"),
    ("The production database password rotates every 30 days", "The staging database password rotates every 30 days"),
    ("Project Apollo is due 2025-03-01", "Project Apollo is due 2025-04-01"),
    ("My cat is called Tom", "My car is called Tom"),
]


async def test_facts_a_word_or_a_number_apart_are_two_facts(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    for first, second in DIFFERENT_FACTS:
        _, created = await store.remember_fact(scope, None, first, "other", 1000.0)
        assert created
        _, created = await store.remember_fact(scope, None, second, "other", 1000.0)
        assert created, f"{second!r} overwrote {first!r}"
    kept = {fact.text for fact in await store.recall_facts(scope, "", 50)}
    assert kept == {text for pair in DIFFERENT_FACTS for text in pair}
    typo, created = await store.remember_fact(scope, None, "My daughter Alice is alergic to peanuts", "other", 2000.0)
    assert not created and typo.text == "My daughter Alice is alergic to peanuts"  # a typo is the same fact
    for title in ("Migrate service A to region 1", "Migrate service B to region 1", "Migrate service A to region 2"):
        _, created = await store.update_task(scope, None, title, "open", "", 3000.0)
        assert created, title
    _, created = await store.update_task(scope, None, "migrate service B to regoin 1", "done", "", 4000.0)
    assert not created
    assert [(t.title, t.status) for t in await store.tasks(scope, True, 10)] == [
        ("migrate service B to regoin 1", "done"),
        ("Migrate service A to region 2", "open"),
        ("Migrate service A to region 1", "open"),
    ]


async def test_a_user_keeps_a_bounded_number_of_facts_and_tasks(
    store: Store, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "remember X" with 10,000 different X: each new one past the limit replaces the least
    # recently confirmed (for tasks: a done one first, then the least recently updated).
    monkeypatch.setattr(knowledge, "MAX_FACTS_PER_USER", 3, raising=False)
    monkeypatch.setattr(knowledge, "MAX_TASKS_PER_USER", 3, raising=False)
    await store.claim_conversation(scope)
    for i, animal in enumerate(["cats", "dogs", "owls", "bats"]):
        await store.remember_fact(scope, None, f"I like {animal}", "preference", 1000.0 + i)
    await store.remember_fact(scope, None, "I like cats", "preference", 2000.0)  # gone: new again
    await store.remember_fact(scope, None, "I like owls", "preference", 2001.0)  # kept: refreshed
    await store.remember_fact(scope, None, "I like eels", "preference", 2002.0)
    assert await texts(store, scope, "") == ["I like eels", "I like owls", "I like cats"]
    await store.update_task(scope, None, "Paint the fence", "open", "", 1000.0)
    await store.update_task(scope, None, "Fix the roof", "done", "", 1001.0)
    await store.update_task(scope, None, "Call the plumber", "open", "", 1002.0)
    await store.update_task(scope, None, "Mow the lawn", "open", "", 1003.0)  # the done one goes
    await store.update_task(scope, None, "Wash the car", "done", "", 1004.0)  # then the oldest, never itself
    assert [t.title for t in await store.tasks(scope, True, 10)] == ["Wash the car", "Mow the lawn", "Call the plumber"]
    bob = other_conversation(scope, user_id="bob")
    await store.claim_conversation(bob)
    await store.remember_fact(bob, None, "I like frogs", "preference", 3000.0)
    await store.update_task(bob, None, "Sweep", "open", "", 3000.0)
    assert len(await store.recall_facts(scope, "", 10)) == 3  # another user's count is their own
    assert len(await store.tasks(scope, True, 10)) == 3


async def test_recall_finds_the_best_matches_across_the_users_conversations(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    for i, text in enumerate(["I prefer tea over coffee", "We chose RabbitMQ for the broker", "My dog is Rex"]):
        await store.remember_fact(scope, None, text, "other", 1000.0 + i)
    fresh = other_conversation(scope)
    await store.claim_conversation(fresh)
    assert await texts(store, fresh, "what are my preferences?") == ["I prefer tea over coffee"]
    assert await texts(store, fresh, "which broker did we choose, rabbitmq?") == ["We chose RabbitMQ for the broker"]
    assert await texts(store, fresh, "tell me about the weather") == []
    assert await texts(store, fresh, "what do you know?") == [  # no searchable word: the latest confirmed
        "My dog is Rex",
        "We chose RabbitMQ for the broker",
        "I prefer tea over coffee",
    ]
    assert await texts(store, fresh, "what do you know?", limit=1) == ["My dog is Rex"]


async def test_facts_never_cross_users_or_tenants(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    await store.remember_fact(scope, None, "I prefer tea", "preference", 1000.0)
    for owner in ({"user_id": "bob"}, {"tenant_id": "globex"}):
        stranger = other_conversation(scope, **owner)
        await store.claim_conversation(stranger)
        assert await texts(store, stranger, "tea preferences") == []
        assert await texts(store, stranger, "") == []
        _, created = await store.remember_fact(stranger, None, "I prefer tea", "preference", 1000.0)
        assert created  # their own fact, not a refresh of alice's
    assert len(await store.recall_facts(scope, "tea", 10)) == 1
    with pytest.raises(Forbidden):  # a scope naming alice's conversation with another user
        await store.recall_facts(scope.model_copy(update={"user_id": "bob"}), "tea", 10)
    with pytest.raises(Invalid):
        await store.remember_fact(scope, None, "?!", "other", 1.0)


async def test_tasks_are_updated_by_title_across_conversations(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)
    task, created = await store.update_task(scope, "t1", "Migrate the billing DB", "open", "", 1000.0)
    assert created and (task.title, task.status, task.progress) == ("Migrate the billing DB", "open", "")
    later = other_conversation(scope)
    await store.claim_conversation(later)
    moved, created = await store.update_task(
        later, "t2", "migrate the billing db", "in_progress", "schema done", 2000.0
    )
    assert not created and moved.task_id == task.task_id
    assert (moved.status, moved.progress, moved.turn_id, moved.updated_at) == (
        "in_progress",
        "schema done",
        "t2",
        2000.0,
    )
    kept, _ = await store.update_task(later, "t3", "Migrate the billing DB", "blocked", "", 3000.0)
    assert kept.progress == "schema done"  # an empty progress keeps the last one
    await store.update_task(scope, None, "Write the release notes", "open", "", 4000.0)
    assert [t.title for t in await store.tasks(later, False, 10)] == [
        "Write the release notes",
        "Migrate the billing DB",
    ]
    await store.update_task(scope, None, "Write the release notes", "done", "published", 5000.0)
    assert [t.status for t in await store.tasks(scope, False, 10)] == ["blocked"]
    assert [t.status for t in await store.tasks(scope, True, 10)] == ["done", "blocked"]
    assert [t.status for t in await store.tasks(scope, True, 1)] == ["done"]
    bob = other_conversation(scope, user_id="bob")
    await store.claim_conversation(bob)
    assert await store.tasks(bob, True, 10) == []


async def test_reasoning_is_audited_by_tenant_user_and_turn(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.record_reasoning(scope, "t1", 1, "then answer")
    await store.record_reasoning(scope, "t1", 0, "think first")
    steps = await store.reasoning_audit("acme", "alice", "t1")
    assert [(s.step, s.text) for s in steps] == [(0, "think first"), (1, "then answer")]
    assert all(abs(s.recorded_at - time.time()) < 60 for s in steps)
    for tenant, user, turn in [("acme", "bob", "t1"), ("globex", "alice", "t1"), ("acme", "alice", "nope")]:
        with pytest.raises(NotFound):
            await store.reasoning_audit(tenant, user, turn)


async def test_reasoning_older_than_the_retention_is_swept(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    await store.record_reasoning(scope, "t1", 0, "old")
    assert await store.sweep_reasoning(time.time() - 3600) == 0
    assert await store.sweep_reasoning(time.time() + 1) == 1
    assert await store.reasoning(scope, "t1") == []


async def test_erasure_deletes_everything_about_the_user_and_nothing_else(store: Store, scope: Scope) -> None:
    bob = other_conversation(scope, user_id="bob")
    for owner in (scope, bob):
        await store.add_turn(owner, "t-" + owner.user_id, ChatMessage(role="user", content="hi"))
        turn_id = "t-" + owner.user_id
        await store.append_messages(owner, turn_id, [ChatMessage(role="assistant", content="hello")])
        await store.append_frame(owner, turn_id + ":accepted", {"type": "message.accepted", "turn_id": turn_id})
        await store.record_reasoning(owner, turn_id, 0, "think")
        await store.claim_tool_call(owner, turn_id, "c1", "clock")
        await store.request_approval(owner, turn_id, "c2", "python", {}, time.time() + 60)
        await store.take_tool_token(owner, "python", 5, time.time())
        await store.save_summary(owner, "Summary: hi", 1, 5, time.time())
        await store.remember_fact(owner, turn_id, "I prefer tea", "preference", time.time())
        await store.update_task(owner, turn_id, "ship it", "open", "", time.time())
    counts = await store.erase_user("acme", "alice")
    assert {kind: n for kind, n in counts.items() if n} == {
        "conversations": 1,
        "turns": 1,
        "messages": 2,
        "frames": 1,
        "summaries": 1,
        "reasoning": 1,
        "tool_calls": 1,
        "approvals": 1,
        "tool_tokens": 1,
        "facts": 1,
        "tasks": 1,
    }
    with pytest.raises(NotFound):
        await store.context(scope, "t-alice", 10)
    with pytest.raises(NotFound):
        await store.decide_approval(
            ApprovalAnswer("acme", "alice", "t-alice", "c2", arguments_sha256({}), True), time.time()
        )
    assert (await store.claim_conversation(scope)) is True  # a clean slate
    assert await store.recall_facts(scope, "", 10) == []
    assert await store.tasks(scope, True, 10) == []
    assert [m.content for m in (await store.context(bob, "t-bob", 10)).messages] == ["hi"]
    assert len(await store.recall_facts(bob, "tea", 10)) == 1
    assert await store.reasoning_audit("acme", "bob", "t-bob") != []
    assert sum((await store.erase_user("acme", "alice")).values()) == 1  # the new conversation only
