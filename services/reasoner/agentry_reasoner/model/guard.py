"""The model call's reliability: retries, a restart after a failure mid-answer, a circuit
breaker per model, and the fallback model.

The SDK retries connection errors, 429 and 5xx itself (`LLM_MAX_RETRIES`, exponential
backoff). A provider that fails after answering 200 (an error event, a cut stream) is
not retried by the SDK, so it is retried here with the same count and backoff while
nothing of the step has been streamed yet. Once something was streamed the step is
restarted once: `AnswerReset("retry")` tells the agent to take back what the client
has. What still fails counts once against that model's breaker, and the next model is
tried (before anything was streamed). While every breaker is open, turns fail at once
with `model_unavailable`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentry_reasoner.breaker import CircuitBreaker
from agentry_reasoner.model.items import (
    AnswerReset,
    Model,
    ModelUnavailable,
    ProviderStreamFailed,
    ReasoningDelta,
    StreamItem,
)

MAX_BACKOFF_S = 8.0


def backoff(attempt: int) -> float:
    """The SDK's schedule: 0.5 s doubling to 8 s, less up to a quarter of jitter."""
    delay: float = min(0.5 * 2.0 ** (attempt - 1), MAX_BACKOFF_S)
    return delay * (1 - 0.25 * random.random())


def _shows(item: StreamItem) -> bool:
    """Does this item reach the client or the step's result? The empty marker does not."""
    return not (isinstance(item, ReasoningDelta) and not item.text)


class GuardedModel:
    """Models in order of preference (primary, then an optional fallback)."""

    def __init__(
        self,
        models: list[tuple[Model, CircuitBreaker]],
        *,
        retries: int = 2,
        restarts: int = 1,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.models = models
        self.retries = retries
        self.restarts = restarts
        self._sleep = sleep

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        last_error: ModelUnavailable | None = None
        for model, breaker in self.models:
            if not breaker.allow():
                continue
            retries = restarts = 0
            while True:
                shown = settled = False
                try:
                    async for item in model.stream(messages, tools):
                        shown = shown or _shows(item)
                        yield item
                    breaker.succeeded()
                    settled = True
                    return
                except ProviderStreamFailed as exc:
                    settled = True
                    if shown and restarts < self.restarts:
                        restarts += 1
                        yield AnswerReset("retry")
                        continue
                    if not shown and retries < self.retries:
                        retries += 1
                        await self._sleep(backoff(retries))
                        continue
                    breaker.failed()
                    if shown:
                        raise
                    last_error = exc
                    break
                except ModelUnavailable as exc:
                    breaker.failed()
                    settled = True
                    if shown:
                        raise
                    last_error = exc
                    break
                finally:
                    if not settled:
                        breaker.abandoned()  # cancelled mid-call, or refused: no verdict on the model
        if last_error is not None:
            raise last_error
        raise ModelUnavailable("the model keeps failing; calls are paused for a cool-down (circuit open)")
