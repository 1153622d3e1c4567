"""The `Store` contract for the token-budget window and the rolling summary (every backend)."""

from __future__ import annotations

import time

from agentry_memory.context.tokens import message_tokens
from agentry_memory.store import Store
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope

WORDS = "lorem ipsum dolor sit amet "  # 27 ASCII characters: about 8 tokens


def say(role: str, n: int, tag: str) -> ChatMessage:
    return ChatMessage(role=role, content=f"{tag} " + WORDS * n)  # type: ignore[arg-type]


async def conversation(store: Store, scope: Scope, turns: int) -> list[ChatMessage]:
    """`turns` turns of a user and an assistant message each; the messages, in order."""
    every = []
    for i in range(1, turns + 1):
        question, answer = say("user", 3, f"q{i}"), say("assistant", 5, f"a{i}")
        await store.add_turn(scope, f"t{i}", question)
        await store.append_messages(scope, f"t{i}", [answer])
        every += [question, answer]
    return every


async def test_the_window_is_bounded_by_tokens_and_keeps_whole_messages(store: Store, scope: Scope) -> None:
    every = await conversation(store, scope, 10)
    await store.add_turn(scope, "now", say("user", 1, "now"))
    budget = sum(message_tokens(m) for m in every[-4:]) + message_tokens(say("user", 1, "now"))
    context = await store.context(scope, "now", limit=100, max_tokens=budget)
    assert context.messages == [*every[-4:], say("user", 1, "now")]
    assert sum(m.tokens for m in context.window) <= budget
    assert [(m.turn_index, m.position) for m in context.window] == [(9, 0), (9, 1), (10, 0), (10, 1), (11, 0)]
    assert context.left_out_turn == 8 and context.summary is None
    one_short = await store.context(scope, "now", limit=100, max_tokens=budget - 1)
    assert one_short.messages == [*every[-3:], say("user", 1, "now")]
    assert one_short.left_out_turn == 9
    everything = await store.context(scope, "now", limit=100, max_tokens=10**6)
    assert len(everything.messages) == 21 and everything.left_out_turn == 0


async def test_this_turns_message_is_always_there_and_the_count_still_applies(store: Store, scope: Scope) -> None:
    await conversation(store, scope, 3)
    huge = say("user", 400, "huge")
    await store.add_turn(scope, "now", huge)
    alone = await store.context(scope, "now", limit=100, max_tokens=10)
    assert alone.messages == [huge] and alone.left_out_turn == 3
    counted = await store.context(scope, "now", limit=2, max_tokens=10**6)
    assert [m.content[:2] for m in counted.messages if m.content] == ["a3", "hu"]


async def test_a_window_never_opens_on_cut_off_tool_results(store: Store, scope: Scope) -> None:
    call = ChatMessage(role="assistant", tool_calls=[{"id": "c1", "type": "function", "function": {"name": "x"}}])
    result = ChatMessage(role="tool", tool_call_id="c1", content="42 " * 40)
    await store.add_turn(scope, "t1", say("user", 1, "q"))
    await store.append_messages(scope, "t1", [call, result, say("assistant", 1, "a")])
    await store.add_turn(scope, "t2", say("user", 1, "now"))
    fits_result = message_tokens(result) + 2 * message_tokens(say("user", 1, "now")) + 1
    context = await store.context(scope, "t2", limit=100, max_tokens=fits_result)
    assert [m.role for m in context.messages] == ["assistant", "user"]  # the result went with its call
    assert context.left_out_turn == 1


async def test_the_summary_shares_the_budget(store: Store, scope: Scope) -> None:
    every = await conversation(store, scope, 6)
    await store.add_turn(scope, "now", say("user", 1, "now"))
    assert await store.save_summary(scope, "Summary: q1; q2", 2, tokens=message_tokens(every[0]), now=time.time())
    budget = sum(message_tokens(m) for m in every[-2:]) + message_tokens(say("user", 1, "now"))
    context = await store.context(scope, "now", limit=100, max_tokens=budget + message_tokens(every[0]))
    assert context.summary is not None and context.summary.text == "Summary: q1; q2"
    assert (context.summary.through_turn, context.summary.tokens) == (2, message_tokens(every[0]))
    assert context.messages == [*every[-2:], say("user", 1, "now")]


async def test_unsummarised_turns_come_whole_and_within_the_budget(store: Store, scope: Scope) -> None:
    every = await conversation(store, scope, 6)
    per_turn = message_tokens(every[0]) + message_tokens(every[1])
    batch = await store.unsummarised(scope, after_turn=1, through_turn=5, max_tokens=2 * per_turn + 1)
    assert [(m.turn_index, m.position) for m in batch] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert [m.message for m in batch] == every[2:6]
    rest = await store.unsummarised(scope, after_turn=3, through_turn=5, max_tokens=10**6)
    assert [m.turn_index for m in rest] == [4, 4, 5, 5]
    first_always = await store.unsummarised(scope, after_turn=0, through_turn=6, max_tokens=1)
    assert [m.turn_index for m in first_always] == [1, 1]  # one huge turn cannot stall the summary
    assert await store.unsummarised(scope, after_turn=6, through_turn=6, max_tokens=100) == []


async def test_a_summary_only_moves_forward(store: Store, scope: Scope) -> None:
    await conversation(store, scope, 4)
    assert await store.summary(scope) is None
    assert await store.save_summary(scope, "Summary: up to 2", 2, 10, time.time())
    assert not await store.save_summary(scope, "Summary: older, late", 1, 10, time.time())
    assert not await store.save_summary(scope, "Summary: same, twice", 2, 10, time.time())
    assert await store.save_summary(scope, "Summary: up to 3", 3, 12, time.time())
    summary = await store.summary(scope)
    assert summary is not None and (summary.text, summary.through_turn, summary.tokens) == ("Summary: up to 3", 3, 12)
