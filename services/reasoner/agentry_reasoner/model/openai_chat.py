"""The model over the official `openai` SDK: a thin adapter from chat-completion chunks
to stream items. The dialect work is done by the pure parsers it drives: thinking out
of `content` (thinking.py), tool calls out of their deltas (tool_calls.py), and errors
into model errors (provider_errors.py).

Reasoning arrives as `reasoning_content` (vLLM up to 0.10, DeepSeek, llama.cpp),
`reasoning` (vLLM 0.11+, Ollama, OpenRouter) or inline in `content`; all of it becomes
`ReasoningDelta`, none of it `TextDelta`. A provider that keeps its reasoning (OpenAI)
reports only how many tokens it took, in the usage asked for with `stream_options`: that
count becomes `HiddenReasoning`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
from agentry_shared.logs import bound_id
from agentry_shared.tracing import model_call, model_headers, record_usage
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient

from agentry_reasoner.model.items import (
    AnswerReset,
    HiddenReasoning,
    ProviderStreamFailed,
    ReasoningDelta,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from agentry_reasoner.model.meter import RequestMeter
from agentry_reasoner.model.options import MaxTokensField, ModelOptions
from agentry_reasoner.model.provider_errors import from_body, from_sdk
from agentry_reasoner.model.thinking import Piece, ThinkingSplitter
from agentry_reasoner.model.tool_calls import ToolCallAccumulator

log = logging.getLogger(__name__)


def reasoning_of(delta: Mapping[str, Any]) -> str | None:
    """vLLM (to 0.10), DeepSeek and llama.cpp say `reasoning_content`; vLLM 0.11+, Ollama
    and OpenRouter `reasoning` (OpenRouter's `reasoning_details` repeats it)."""
    value = delta.get("reasoning_content") or delta.get("reasoning")
    return value if isinstance(value, str) and value else None


def mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object of a chunk, or an empty one where the server sent something else."""
    return value if isinstance(value, dict) else {}


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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


def model_client(base_url: str, api_key: str, *, timeout: float, max_retries: int) -> AsyncOpenAI:
    """The SDK's client on the SDK's own aiohttp transport (`DefaultAioHttpClient`, the
    `openai[aiohttp]` extra): the default httpx/anyio stack was ~9 % of the reasoner's
    samples per model call under load (py-spy, docs/benchmarks.md). Retries, timeouts and
    errors are the SDK's either way."""
    return AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        http_client=DefaultAioHttpClient(),
    )


class OpenAIModel:
    def __init__(self, client: AsyncOpenAI, model: str, options: ModelOptions | None = None) -> None:
        self._client = client
        self._model = model
        self.options = options or ModelOptions()
        self._max_field: MaxTokensField = self.options.max_tokens_field
        self._stream_usage = self.options.stream_usage
        self._starts_open = self.options.starts_open

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        with model_call(self._model) as span, RequestMeter(self._model, messages, tools) as meter:
            async for item in self._stream(messages, tools, meter):
                yield item
            record_usage(span, *meter.tokens(), estimated=meter.usage is None)

    async def _stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], meter: RequestMeter
    ) -> AsyncIterator[StreamItem]:
        reading = _Reading(self.options, meter, starts_open=self._starts_open)
        try:
            stream: AsyncStream[object] = await self._create(messages, tools)
            async with stream:
                await _refuse_error_body(stream.response)
                yield ReasoningDelta("")  # answered: the thinking indicator runs from here
                async for chunk in stream:
                    for item in reading.items_of_chunk(chunk):
                        yield item
                    self._learn(reading.splitter.verdict)
        except openai.APIError as exc:
            raise from_sdk(exc) from exc
        except json.JSONDecodeError as exc:
            raise ProviderStreamFailed("the model sent an event that is not JSON") from exc
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            raise ProviderStreamFailed(f"the model's stream broke off: {type(exc).__name__}") from exc
        for item in reading.end():
            yield item
        self._learn(reading.splitter.verdict)

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        # The conversation and the tools go in `extra_body`, which the SDK sends as given:
        # as `messages=` it walks every message against its TypedDicts (`async_transform`),
        # half the reasoner's CPU on a long conversation (py-spy, docs/benchmarks.md), to
        # change nothing: our messages are already plain JSON of the wire's shape.
        body: dict[str, Any] = {"messages": messages}
        kwargs: dict[str, Any] = {"model": self._model, "messages": [], "stream": True, "extra_body": body}
        if headers := model_headers(bound_id("turn_id")):
            kwargs["extra_headers"] = headers  # the model server continues the turn's trace and names the turn
        if self._stream_usage:
            # The last chunk then carries `usage` (OpenAI, vLLM, llama.cpp, Ollama); servers
            # that do not know the option ignore it (and one that refuses it is asked without).
            kwargs["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
        if self.options.reasoning_effort:
            kwargs["reasoning_effort"] = self.options.reasoning_effort
        if self.options.max_output_tokens:
            kwargs[self._max_field] = self.options.max_output_tokens
        return kwargs

    async def _create(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncStream[object]:
        """The SDK's request (its retries, its errors, its SSE reading), its chunks as the
        plain JSON objects the server sent: `AsyncStream[object]` skips building a
        pydantic chunk per token, which was most of what reading the stream cost (py-spy,
        docs/benchmarks.md); `_Reading` reads the fields itself."""
        create = self._client.chat.completions.with_raw_response.create
        try:
            response = await create(**self._request(messages, tools))
        except openai.BadRequestError as exc:
            if not self._adapt_to(exc):
                raise
            response = await create(**self._request(messages, tools))
        stream: AsyncStream[object] = response.parse(to=AsyncStream[object])
        return stream

    def _learn(self, verdict: bool | None) -> None:
        """What a reply showed of the model's template, for its later replies: a `</think>`
        no tag opened means the template opens the thinking (from not known, or from
        "does not" after a reply whose text the client saw and had taken back); a reply
        that marked its own thinking, or answered with no marker, means it does not. A
        model once known to open it stays so: reading it wrongly so costs streaming,
        reading it wrongly the other way shows thinking."""
        if not self.options.learns_starts_open or verdict is None or self._starts_open is True:
            return
        if verdict:
            self._starts_open = True
            log.warning(
                "the model closed a thinking it never opened; its replies now start inside the "
                "thinking (set LLM_THINK_STARTS_OPEN=true to have that from the start)",
                extra={"model": self._model},
            )
        elif self._starts_open is None:
            self._starts_open = False
            log.info(
                "the model's replies start outside any thinking; they stream from now on", extra={"model": self._model}
            )

    def _adapt_to(self, exc: openai.BadRequestError) -> bool:
        """A 400 that names a parameter this server will not take: change the request (for
        this and every later call) and say whether it is worth sending again."""
        message = str(exc.message)
        # OpenAI's reasoning models: "Unsupported parameter: 'max_tokens' … use 'max_completion_tokens'".
        if self._max_field == "max_tokens" and self.options.max_output_tokens and "max_completion_tokens" in message:
            self._max_field = "max_completion_tokens"
            return True
        if self._stream_usage and "stream_options" in message:
            self._stream_usage = False
            return True
        return False


class _Reading:
    """One model call's chunks read so far: the thinking split out of `content`, the tool
    calls being assembled, and what the stream has said about its own end."""

    def __init__(self, options: ModelOptions, meter: RequestMeter, *, starts_open: bool | None) -> None:
        self.meter = meter
        self.splitter = ThinkingSplitter(options.think_tags, starts_open=starts_open)
        self.calls = ToolCallAccumulator()
        self.finished = self.chose = False
        self.cut = False  # the reply reached the output cap (`finish_reason` "length")
        self.reasoned = False  # some reasoning text arrived
        self.reasoning_tokens = 0  # as the usage reports them

    def items_of_chunk(self, data: object) -> list[StreamItem]:
        chunk = mapping(data)
        _refuse_error_chunk(chunk)
        items: list[StreamItem] = []
        choices = chunk.get("choices")
        for choice in map(mapping, choices if isinstance(choices, list) else []):
            self.chose = True
            finish_reason = choice.get("finish_reason")
            self.finished = self.finished or bool(finish_reason)
            self.cut = self.cut or finish_reason == "length"
            if finish_reason == "error":
                raise ProviderStreamFailed("the model ended its answer with an error")
            items += self._items_of_delta(mapping(choice.get("delta")))
        usage = mapping(chunk.get("usage"))
        self.reasoning_tokens = _reasoning_tokens(usage) or self.reasoning_tokens
        self.meter.chunk(usage)
        self.meter.saw(items)
        self.reasoned = self.reasoned or any(isinstance(i, ReasoningDelta) and i.text for i in items)
        return items

    def end(self) -> list[StreamItem]:
        """The stream ended: what the splitter still holds, the hidden reasoning, the calls."""
        if not self.finished:
            said = "no choices" if not self.chose else "no finish_reason"
            raise ProviderStreamFailed(f"the model's stream ended before the answer was finished ({said})")
        items = items_of(self.splitter.close(cut=self.cut))
        if self.reasoning_tokens and not self.reasoned:
            items.append(HiddenReasoning(self.reasoning_tokens))
        if self.calls:
            items.append(ToolCallsRequested([ToolCall(c.call_id, c.name, c.arguments) for c in self.calls.calls()]))
        self.meter.saw(items)
        return items

    def _items_of_delta(self, delta: Mapping[str, Any]) -> list[StreamItem]:
        items: list[StreamItem] = []
        reasoning = reasoning_of(delta)
        if reasoning:
            self.splitter.separate_reasoning_seen()
            items.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            items += items_of(self.splitter.feed(content))
        pieces = delta.get("tool_calls")
        for piece in map(mapping, pieces if isinstance(pieces, list) else []):
            function = mapping(piece.get("function"))
            index = piece.get("index")
            self.calls.add(
                index if isinstance(index, int) and not isinstance(index, bool) else None,
                text_or_none(piece.get("id")),
                text_or_none(function.get("name")),
                text_or_none(function.get("arguments")),
            )
        return items


def _reasoning_tokens(usage: Mapping[str, Any]) -> int:
    """`usage.completion_tokens_details.reasoning_tokens` (OpenAI, OpenRouter), else 0."""
    tokens = mapping(usage.get("completion_tokens_details")).get("reasoning_tokens")
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0 else 0


def _is_transport_error(exc: Exception) -> bool:
    """The connection failed while the stream was read (the SDK wraps such errors only
    while it sends the request). Matched by module: the SDK's HTTP library is `httpx` in
    some releases and `httpx2` in others; aiohttp is its transport (`model_client`)."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES


_TRANSPORT_MODULES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11", "aiohttp"})


async def _refuse_error_body(response: Any) -> None:
    """A 200 with a JSON error body instead of an event stream (some proxies, LM Studio)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    try:
        body = json.loads(await response.aread())
    except ValueError:
        body = None
    raise from_body(body) or ProviderStreamFailed("the model answered with JSON where an event stream was due")


def _refuse_error_chunk(chunk: Mapping[str, Any]) -> None:
    """vLLM's mid-stream `{"object": "error", "message": …}` has no `error` key, so the SDK
    passes it on as a chunk."""
    if chunk.get("object") == "error" or chunk.get("error"):
        raise from_body(chunk) or ProviderStreamFailed("the model sent an error")
