"""The model as the agent loop sees it: a stream of reasoning, text and finished tool calls.

Wraps the official `openai` SDK so any OpenAI-compatible server works (OpenAI, vLLM,
Ollama, llama.cpp, the offline model). Tool-call deltas arrive in pieces keyed by
`index`; they are assembled here so the loop only ever sees whole calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import openai
from agentry_shared.contracts.errors import TurnFailureCode
from openai import AsyncOpenAI

from agentry_reasoner.breaker import CircuitBreaker


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text as the model wrote it; validated before dispatch


@dataclass(frozen=True)
class ToolCallsRequested:
    calls: list[ToolCall]


StreamItem = ReasoningDelta | TextDelta | ToolCallsRequested


class ModelUnavailable(Exception):
    """The model could not be reached or kept failing; the turn fails with this code."""

    code: ClassVar[TurnFailureCode] = "model_unavailable"


class ModelError(Exception):
    """The model answered with an error it will repeat (bad request, auth)."""

    code: ClassVar[TurnFailureCode] = "model_error"


class Model(Protocol):
    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]: ...


@dataclass
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _reasoning_of(delta: Any) -> str | None:
    """vLLM and DeepSeek stream `reasoning_content`; some servers call it `reasoning`."""
    extra = getattr(delta, "model_extra", None) or {}
    value = extra.get("reasoning_content") or extra.get("reasoning") or getattr(delta, "reasoning_content", None)
    return value if isinstance(value, str) and value else None


class OpenAIModel:
    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self._client = client
        self._model = model

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        kwargs: dict[str, Any] = {"model": self._model, "messages": messages, "stream": True}
        if tools:
            kwargs["tools"] = tools
        partial: dict[int, _PartialCall] = {}
        try:
            stream = await self._client.chat.completions.create(**kwargs)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        reasoning = _reasoning_of(delta)
                        if reasoning:
                            yield ReasoningDelta(reasoning)
                        if delta.content:
                            yield TextDelta(delta.content)
                        for piece in delta.tool_calls or []:
                            call = partial.setdefault(piece.index, _PartialCall())
                            if piece.id:
                                call.call_id = piece.id
                            if piece.function and piece.function.name:
                                call.name += piece.function.name
                            if piece.function and piece.function.arguments:
                                call.arguments.append(piece.function.arguments)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError) as exc:
            raise ModelUnavailable(f"model unreachable: {type(exc).__name__}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise ModelUnavailable(f"model server error {exc.status_code}") from exc
            raise ModelError(f"model refused the request ({exc.status_code})") from exc
        if partial:
            yield ToolCallsRequested(
                [
                    ToolCall(c.call_id or f"call_{i}", c.name, "".join(c.arguments) or "{}")
                    for i, c in sorted(partial.items())
                ]
            )


class GuardedModel:
    """Models in order of preference (primary, then an optional fallback), each behind its
    own circuit breaker.

    The SDK already retries connection errors, 429 and 5xx with exponential backoff
    (`LLM_MAX_RETRIES`); what still fails counts against that model's breaker, and the next
    model is tried. While every breaker is open, turns fail at once with
    `model_unavailable`. A model that fails after streaming something is not replaced
    mid-answer: the text the client already has cannot be taken back silently.
    """

    def __init__(self, models: list[tuple[Model, CircuitBreaker]]) -> None:
        self.models = models

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        last_error: ModelUnavailable | None = None
        for model, breaker in self.models:
            if not breaker.allow():
                continue
            yielded = settled = False
            try:
                async for item in model.stream(messages, tools):
                    yielded = True
                    yield item
                breaker.succeeded()
                settled = True
                return
            except ModelUnavailable as exc:
                breaker.failed()
                settled = True
                if yielded:
                    raise
                last_error = exc
            finally:
                if not settled:
                    breaker.abandoned()  # cancelled mid-call: no verdict on the model
        if last_error is not None:
            raise last_error
        raise ModelUnavailable("the model keeps failing; calls are paused for a cool-down (circuit open)")
