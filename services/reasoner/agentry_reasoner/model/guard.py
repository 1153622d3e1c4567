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
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Literal

from agentry_reasoner.breaker import CircuitBreaker
from agentry_reasoner.metrics import MODEL_FALLBACKS, FallbackReason
from agentry_reasoner.model.items import (
    AnswerReset,
    HiddenReasoning,
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
    """Does this item reach the client or the step's result? The empty marker and the
    count of hidden reasoning tokens do not."""
    if isinstance(item, HiddenReasoning):
        return False
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
        passed_over: FallbackReason | None = None  # why the model before this one was not used
        for model, breaker in self.models:
            if not breaker.allow():
                passed_over = "open"
                continue
            if passed_over is not None:
                MODEL_FALLBACKS.labels(passed_over).inc()
            verdict = _Verdict()
            async with aclosing(self._on_model(model, breaker, messages, tools, verdict)) as items:
                async for item in items:
                    yield item
            if verdict.error is None:
                return
            last_error = verdict.error
            passed_over = "failed"
        if last_error is not None:
            raise last_error
        raise ModelUnavailable("the model keeps failing; calls are paused for a cool-down (circuit open)")

    async def _on_model(
        self,
        model: Model,
        breaker: CircuitBreaker,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        verdict: _Verdict,
    ) -> AsyncGenerator[StreamItem, None]:
        """One model's tries: retries while nothing was shown, restarts after. Returns with
        `verdict.error` set when the next model should be tried; raises when it must not."""
        tries = _Tries(self.retries, self.restarts)
        while True:
            shown = settled = False
            try:
                async for item in model.stream(messages, tools):
                    shown = shown or _shows(item)
                    yield item
                breaker.succeeded()
                settled = True
                return
            except ModelUnavailable as exc:
                settled = True
                again = tries.again(exc, shown)
                if again == "restart":
                    yield AnswerReset("retry")
                    continue
                if again == "retry":
                    await self._sleep(backoff(tries.retries))
                    continue
                breaker.failed()
                if shown:
                    raise
                verdict.error = exc
                return
            finally:
                if not settled:
                    breaker.abandoned()  # cancelled mid-call, or refused: no verdict on the model


class _Verdict:
    """How one model's tries ended: `error` when the next model should be tried."""

    def __init__(self) -> None:
        self.error: ModelUnavailable | None = None


class _Tries:
    """What one model has used of its retries (nothing shown yet) and restarts (after)."""

    def __init__(self, retries: int, restarts: int) -> None:
        self.max_retries, self.max_restarts = retries, restarts
        self.retries = self.restarts = 0

    def again(self, exc: ModelUnavailable, shown: bool) -> Literal["retry", "restart"] | None:
        """Whether to try this model once more after `exc`. Only a failure after the provider
        began to answer is tried again: the SDK has already retried the others."""
        if not isinstance(exc, ProviderStreamFailed):
            return None
        if shown and self.restarts < self.max_restarts:
            self.restarts += 1
            return "restart"
        if not shown and self.retries < self.max_retries:
            self.retries += 1
            return "retry"
        return None
