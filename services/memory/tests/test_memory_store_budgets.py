"""The `Store` contract for turn budgets: turns per minute, concurrent turns and model
tokens per day, per user and per tenant, counted for every replica."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from agentry_memory.store import Admission, Store
from agentry_memory.store.records import ADMISSION_GRACE_SECONDS, DAY_SECONDS, TOKEN_WINDOW_SECONDS, token_window
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.memory import TurnBudgets
from agentry_shared.contracts.scope import Scope


@pytest.fixture
def now() -> float:
    """10 s into the current minute, read when the test starts: the TTL indexes (mongomock
    applies them on the wall clock) must not drop a window the test still counts in."""
    return token_window(time.time()) + 10


async def claimed(store: Store, scope: Scope) -> Scope:
    await store.claim_conversation(scope)
    return scope


def other_user(scope: Scope, user: str = "bob", tenant: str | None = None) -> Scope:
    return scope.model_copy(
        update={
            "user_id": user,
            "tenant_id": tenant or scope.tenant_id,
            "conversation_id": f"{scope.conversation_id}-{user}",
        }
    )


async def test_no_budget_admits_everything(store: Store, scope: Scope, now: float) -> None:
    await claimed(store, scope)
    for n in range(5):
        assert await store.admit_turn(scope, f"t{n}", TurnBudgets(), now) == Admission(True)


async def test_turns_per_minute_per_user(store: Store, scope: Scope, now: float) -> None:
    await claimed(store, scope)
    budgets = TurnBudgets(user_turns_per_minute=2)
    assert (await store.admit_turn(scope, "t1", budgets, now)).allowed
    assert (await store.admit_turn(scope, "t2", budgets, now + 1)).allowed
    assert (await store.admit_turn(scope, "t1", budgets, now + 2)).allowed  # admitted before: counted once
    refused = await store.admit_turn(scope, "t3", budgets, now + 5)
    assert (refused.allowed, refused.code, refused.limit) == (False, "rate_limited", "BUDGET_USER_TURNS_PER_MINUTE")
    assert refused.retry_after_seconds == TOKEN_WINDOW_SECONDS - 15
    bob = await claimed(store, other_user(scope))
    assert (await store.admit_turn(bob, "b1", budgets, now + 5)).allowed  # another user's count
    assert (await store.admit_turn(scope, "t3", budgets, now + TOKEN_WINDOW_SECONDS)).allowed  # the next minute


async def test_turns_per_minute_per_tenant(store: Store, scope: Scope, now: float) -> None:
    budgets = TurnBudgets(tenant_turns_per_minute=2)
    alice, bob = await claimed(store, scope), await claimed(store, other_user(scope))
    other_tenant = await claimed(store, other_user(scope, "carol", "globex"))
    assert (await store.admit_turn(alice, "a1", budgets, now)).allowed
    assert (await store.admit_turn(bob, "b1", budgets, now)).allowed
    refused = await store.admit_turn(bob, "b2", budgets, now)
    assert (refused.code, refused.limit) == ("rate_limited", "BUDGET_TENANT_TURNS_PER_MINUTE")
    assert (await store.admit_turn(other_tenant, "c1", budgets, now)).allowed


async def test_concurrent_turns_end_when_the_turn_finishes(store: Store, scope: Scope, now: float) -> None:
    await claimed(store, scope)
    budgets = TurnBudgets(user_concurrent_turns=1)
    assert (await store.admit_turn(scope, "t1", budgets, now)).allowed
    refused = await store.admit_turn(scope, "t2", budgets, now)  # t1 is on its way to the log
    assert (refused.code, refused.limit) == ("rate_limited", "BUDGET_USER_CONCURRENT_TURNS")
    assert refused.retry_after_seconds > 0
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="hi"))
    assert not (await store.admit_turn(scope, "t2", budgets, now)).allowed  # queued
    await store.append_frame(scope, "t1:end", {"type": "turn.completed", "turn_id": "t1", "text": "hello"})
    assert (await store.admit_turn(scope, "t2", budgets, now)).allowed


async def test_an_admitted_turn_never_logged_stops_counting(store: Store, scope: Scope, now: float) -> None:
    """Its publish failed: it holds a concurrency slot only for the grace."""
    await claimed(store, scope)
    budgets = TurnBudgets(tenant_concurrent_turns=1)
    assert (await store.admit_turn(scope, "lost", budgets, now)).allowed
    assert not (await store.admit_turn(scope, "t2", budgets, now + 1)).allowed
    assert (await store.admit_turn(scope, "t2", budgets, now + ADMISSION_GRACE_SECONDS + 1)).allowed


async def test_tokens_per_day(store: Store, scope: Scope, now: float) -> None:
    await claimed(store, scope)
    bob = await claimed(store, other_user(scope))
    budgets = TurnBudgets(user_tokens_per_day=100, tenant_tokens_per_day=150)
    assert (await store.admit_turn(scope, "t1", budgets, now)).allowed
    await store.record_usage(scope, 60, now)
    assert (await store.admit_turn(scope, "t2", budgets, now)).allowed  # 60 < 100: the turn may overrun
    await store.record_usage(scope, 60, now)
    refused = await store.admit_turn(scope, "t3", budgets, now)
    assert (refused.code, refused.limit) == ("budget_exceeded", "BUDGET_USER_TOKENS_PER_DAY")
    day_end = now - now % DAY_SECONDS + DAY_SECONDS
    assert refused.retry_after_seconds == day_end - now
    assert (await store.admit_turn(bob, "b1", budgets, now)).allowed  # bob: 0 of 100, tenant 120 of 150
    await store.record_usage(bob, 30, now)
    refused = await store.admit_turn(bob, "b2", budgets, now)
    assert (refused.code, refused.limit) == ("budget_exceeded", "BUDGET_TENANT_TOKENS_PER_DAY")
    assert (await store.admit_turn(scope, "t3", budgets, day_end + 1)).allowed  # a new day


async def test_budgets_are_shared_by_every_store_on_the_same_data(
    make_store: Callable[[], Store], scope: Scope, now: float
) -> None:
    """Two memory replicas (two stores on one database) count together."""
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    try:
        await first.claim_conversation(scope)
        budgets = TurnBudgets(user_turns_per_minute=1)
        assert (await first.admit_turn(scope, "t1", budgets, now)).allowed
        assert not (await second.admit_turn(scope, "t2", budgets, now)).allowed
    finally:
        await first.close()
        await second.close()
