"""The model over the official `openai` SDK: a thin adapter from chat-completion chunks
to stream items. The dialect work is done by the pure parsers it drives: thinking out
of `content` (thinking.py), tool calls out of their deltas (tool_calls.py), and errors
into model errors (provider_errors.py).

Reasoning arrives as `reasoning_content` (vLLM up to 0.10, DeepSeek, llama.cpp),
`reasoning` (vLLM 0.11+, Ollama, OpenRouter) or inline in `content`; all of it becomes
`ReasoningDelta`, none of it `TextDelta`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI

from agentry_reasoner.model.items import (
    AnswerReset,
    ProviderStreamFailed,
    ReasoningDelta,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from agentry_reasoner.model.options import MaxTokensField, ModelOptions
from agentry_reasoner.model.provider_errors import from_body, from_sdk
from agentry_reasoner.model.thinking import Piece, ThinkingSplitter
from agentry_reasoner.model.tool_calls import ToolCallAccumulator


def reasoning_of(delta: Any) -> str | None:
    """vLLM (to 0.10), DeepSeek and llama.cpp say `reasoning_content`; vLLM 0.11+, Ollama
    and OpenRouter `reasoning` (OpenRouter's `reasoning_details` repeats it)."""
    extra = getattr(delta, "model_extra", None) or {}
    value = extra.get("reasoning_content") or extra.get("reasoning") or getattr(delta, "reasoning_content", None)
    return value if isinstance(value, str) and value else None


def items_of(pieces: list[Piece]) -> list[StreamItem]:
    items: list[StreamItem] = []
    for kind, text in pieces:
        if kind == "retract":
            items.append(AnswerReset("thinking"))
        elif kind == "reasoning":
            items.append(ReasoningDelta(text))
        else:
            items.append(TextDelta(text))
    return items


class OpenAIModel:
    def __init__(self, client: AsyncOpenAI, model: str, options: ModelOptions | None = None) -> None:
        self._client = client
        self._model = model
        self.options = options or ModelOptions()
        self._max_field: MaxTokensField = self.options.max_tokens_field

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        splitter = ThinkingSplitter(self.options.think_tags, starts_open=self.options.starts_open)
        calls = ToolCallAccumulator()
        finished = chose = False
        try:
            stream = await self._create(messages, tools)
            async with stream:
                await _refuse_error_body(stream.response)
                yield ReasoningDelta("")  # answered: the thinking indicator runs from here
                async for chunk in stream:
                    _refuse_error_chunk(chunk)
                    for choice in getattr(chunk, "choices", None) or []:
                        chose = True
                        finished = finished or bool(choice.finish_reason)
                        if choice.finish_reason == "error":
                            raise ProviderStreamFailed("the model ended its answer with an error")
                        for item in self._items_of_delta(choice.delta, splitter, calls):
                            yield item
        except openai.APIError as exc:
            raise from_sdk(exc) from exc
        except json.JSONDecodeError as exc:
            raise ProviderStreamFailed("the model sent an event that is not JSON") from exc
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            raise ProviderStreamFailed(f"the model's stream broke off: {type(exc).__name__}") from exc
        if not finished:
            said = "no choices" if not chose else "no finish_reason"
            raise ProviderStreamFailed(f"the model's stream ended before the answer was finished ({said})")
        for item in items_of(splitter.close()):
            yield item
        if calls:
            yield ToolCallsRequested([ToolCall(c.call_id, c.name, c.arguments) for c in calls.calls()])

    def _items_of_delta(self, delta: Any, splitter: ThinkingSplitter, calls: ToolCallAccumulator) -> list[StreamItem]:
        if delta is None:
            return []
        items: list[StreamItem] = []
        reasoning = reasoning_of(delta)
        if reasoning:
            splitter.separate_reasoning_seen()
            items.append(ReasoningDelta(reasoning))
        if delta.content:
            items += items_of(splitter.feed(delta.content))
        for piece in delta.tool_calls or []:
            function = piece.function
            calls.add(
                getattr(piece, "index", None),
                piece.id,
                function.name if function else None,
                function.arguments if function else None,
            )
        return items

    async def _create(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        kwargs: dict[str, Any] = {"model": self._model, "messages": messages, "stream": True}
        if tools:
            kwargs["tools"] = tools
        if self.options.reasoning_effort:
            kwargs["reasoning_effort"] = self.options.reasoning_effort
        if self.options.max_output_tokens:
            kwargs[self._max_field] = self.options.max_output_tokens
        try:
            return await self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            # OpenAI's reasoning models: "Unsupported parameter: 'max_tokens' … use 'max_completion_tokens'".
            if self._max_field != "max_tokens" or "max_completion_tokens" not in str(exc.message):
                raise
            self._max_field = "max_completion_tokens"
            kwargs["max_completion_tokens"] = kwargs.pop("max_tokens")
            return await self._client.chat.completions.create(**kwargs)


def _is_transport_error(exc: Exception) -> bool:
    """The connection failed while the stream was read (the SDK wraps such errors only
    while it sends the request). Matched by module: the SDK's HTTP library is `httpx` in
    some releases and `httpx2` in others."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES


_TRANSPORT_MODULES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11"})


async def _refuse_error_body(response: Any) -> None:
    """A 200 with a JSON error body instead of an event stream (some proxies, LM Studio)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    try:
        body = json.loads(await response.aread())
    except ValueError:
        body = None
    raise from_body(body) or ProviderStreamFailed("the model answered with JSON where an event stream was due")


def _refuse_error_chunk(chunk: Any) -> None:
    """vLLM's mid-stream `{"object": "error", "message": …}` has no `error` key, so the SDK
    passes it on as a chunk."""
    extra = getattr(chunk, "model_extra", None) or {}
    if getattr(chunk, "object", None) == "error" or extra.get("error"):
        raise from_body({**extra, "object": getattr(chunk, "object", None)}) or ProviderStreamFailed(
            "the model sent an error"
        )
