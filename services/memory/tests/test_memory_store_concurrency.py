"""Concurrent and retried writes to one conversation (every backend): nothing lost, nothing
twice, one order."""

from __future__ import annotations

import asyncio

from agentry_memory.store import Store
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope

N = 50


async def test_50_concurrent_appends_each_retried_keep_every_message_once_in_order(store: Store, scope: Scope) -> None:
    await store.claim_conversation(scope)

    async def append(i: int) -> tuple[int, int]:
        """What the log does for one turn: the turn with its message, then its frame."""
        index = await store.add_turn(scope, f"t{i:02}", ChatMessage(role="user", content=f"m{i:02}"))
        seq, _ = await store.append_frame(scope, f"t{i:02}:accepted", {"type": "message.accepted", "id": f"m{i:02}"})
        return index, seq

    first = await asyncio.gather(*(append(i) for i in range(N)), *(append(i) for i in reversed(range(N))))
    retried = await asyncio.gather(*(append(i) for i in range(N)))  # a redelivery of everything, later
    assert first[:N] == first[N:][::-1] == retried  # a retry answers what the first write got

    indexes = sorted(index for index, _ in retried)
    assert len(set(indexes)) == N  # one turn each, whatever the backend's counter did
    assert sorted(seq for _, seq in retried) == list(range(1, N + 1))  # seqs: no gap, no duplicate
    frames = await store.frames_after(scope, 0, 1000)
    assert [f["seq"] for f in frames] == list(range(1, N + 1))
    assert sorted(f["id"] for f in frames) == [f"m{i:02}" for i in range(N)]

    last = max(retried)
    newest = f"t{retried.index(last):02}"
    context = await store.context(scope, newest, limit=1000)
    by_index = sorted((index, f"m{i:02}") for i, (index, _) in enumerate(retried))
    assert [m.content for m in context.messages] == [text for _, text in by_index]  # in turn order, once each


async def test_concurrent_checkpoints_of_one_turn_leave_one_full_list(store: Store, scope: Scope) -> None:
    await store.add_turn(scope, "t1", ChatMessage(role="user", content="q"))
    steps = [ChatMessage(role="assistant", content=f"step {i}") for i in range(N)]
    # A reasoner checkpoints the growing list; retries of the same list race with each other.
    await asyncio.gather(*(store.append_messages(scope, "t1", steps) for _ in range(5)))
    await asyncio.gather(*(store.append_messages(scope, "t1", steps[: i + 1]) for i in range(N - 5, N)))
    await store.append_messages(scope, "t1", steps)
    context = await store.context(scope, "t1", limit=10)
    assert context.produced == steps


async def test_a_refused_write_among_concurrent_ones_fails_alone(store: Store, scope: Scope) -> None:
    """The SQLite store commits concurrent writes as one group: a refusal in it must undo
    only itself, and every other write must stand and be answered."""
    await store.claim_conversation(scope)
    stranger = scope.model_copy(update={"user_id": "someone-else"})

    async def frame(i: int, who: Scope) -> int:
        seq, _ = await store.append_frame(who, f"e{i:02}", {"type": "message.delta", "text": str(i)})
        return seq

    outcomes = await asyncio.gather(
        *(frame(i, stranger if i % 5 == 0 else scope) for i in range(20)), return_exceptions=True
    )
    refused = [o for i, o in enumerate(outcomes) if i % 5 == 0]
    assert all(isinstance(o, Exception) for o in refused)
    stored = sorted(o for i, o in enumerate(outcomes) if i % 5 != 0 and isinstance(o, int))
    assert stored == list(range(1, 17))
    assert [f["seq"] for f in await store.frames_after(scope, 0, 100)] == list(range(1, 17))
