"""The circuit breaker and the fallback model, with scripted models and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from agentry_reasoner.breaker import CircuitBreaker
from agentry_reasoner.model import GuardedModel, ModelUnavailable, StreamItem, TextDelta


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyModel:
    def __init__(self, text: str, failing: bool = True) -> None:
        self.text = text
        self.failing = failing
        self.calls = 0

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        self.calls += 1
        if self.failing:
            raise ModelUnavailable("down")
        yield TextDelta(self.text)


async def collect(model: GuardedModel) -> str:
    pieces = [item.text async for item in model.stream([], []) if isinstance(item, TextDelta)]
    return "".join(pieces)


async def test_breaker_opens_after_repeated_failures_then_fails_fast_then_recovers() -> None:
    clock = Clock()
    primary = FlakyModel("hi")
    guarded = GuardedModel([(primary, CircuitBreaker(failures=3, cooldown_s=10, clock=clock))])
    for _ in range(3):
        with pytest.raises(ModelUnavailable):
            await collect(guarded)
    assert primary.calls == 3
    with pytest.raises(ModelUnavailable, match="circuit open"):
        await collect(guarded)
    assert primary.calls == 3  # failed fast, the model was not called
    clock.now = 11
    primary.failing = False
    assert await collect(guarded) == "hi"  # half-open trial succeeds and closes the breaker
    assert await collect(guarded) == "hi"
    primary.failing = True  # closed again: one failure is counted afresh, it does not reopen it
    with pytest.raises(ModelUnavailable, match="down"):
        await collect(guarded)
    primary.failing = False
    assert await collect(guarded) == "hi"


async def test_fallback_answers_while_the_primary_fails() -> None:
    clock = Clock()
    primary, fallback = FlakyModel("primary"), FlakyModel("fallback", failing=False)
    guarded = GuardedModel(
        [(primary, CircuitBreaker(2, 10, clock=clock)), (fallback, CircuitBreaker(2, 10, clock=clock))]
    )
    assert await collect(guarded) == "fallback"
    assert await collect(guarded) == "fallback"
    assert await collect(guarded) == "fallback"
    assert primary.calls == 2  # open after two failures: skipped straight to the fallback
