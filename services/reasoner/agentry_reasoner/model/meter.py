"""What one model request costs, for the metrics: its duration, its time to first token,
and its tokens in and out (also counted for the turn's tokens budget: `usage`).

Tokens come from the `usage` the server reports on the last chunk (asked for with
`stream_options.include_usage`); a server that reports none is estimated at four
characters per token, and the series says which (`source`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from agentry_reasoner.metrics import (
    MODEL_FIRST_TOKEN_SECONDS,
    MODEL_REQUEST_SECONDS,
    MODEL_REQUESTS,
    MODEL_TOKENS,
    ModelRequestOutcome,
)
from agentry_reasoner.model.items import (
    ContextTooLong,
    ModelError,
    ModelUnavailable,
    ReasoningDelta,
    StreamItem,
    TextDelta,
    ToolCallsRequested,
)
from agentry_reasoner.usage import count_tokens

CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _outcome(exc: BaseException | None) -> ModelRequestOutcome:
    if exc is None:
        return "ok"
    if isinstance(exc, ContextTooLong):
        return "context_too_long"
    if isinstance(exc, ModelError):
        return "model_error"
    if isinstance(exc, ModelUnavailable):
        return "model_unavailable"
    return "abandoned"  # cancelled, closed early, or a bug: no verdict on the model


class RequestMeter:
    """Used as `with RequestMeter(model, messages) as meter:` around one request's stream."""

    def __init__(self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> None:
        self.model = model
        # Measured only if the server reports no usage: encoding a long conversation is not free.
        self._request = (messages, tools)
        self.output_chars = 0
        self.usage: tuple[int, int] | None = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None

    def __enter__(self) -> RequestMeter:
        self.started = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        outcome = _outcome(exc)
        MODEL_REQUESTS.labels(self.model, outcome).inc()
        MODEL_REQUEST_SECONDS.labels(self.model).observe(time.monotonic() - self.started)
        source = "usage" if self.usage is not None else "estimate"
        tokens_in, tokens_out = self.tokens()
        MODEL_TOKENS.labels(self.model, "input", source).inc(tokens_in)
        MODEL_TOKENS.labels(self.model, "output", source).inc(tokens_out)
        count_tokens(tokens_in + tokens_out)

    def tokens(self) -> tuple[int, int]:
        """(in, out): as the server reported them, else estimated from the characters."""
        if self.usage is not None:
            return self.usage
        return estimate_tokens(self.input_chars()), estimate_tokens(self.output_chars)

    def input_chars(self) -> int:
        messages, tools = self._request
        return len(json.dumps(messages, default=str)) + len(json.dumps(tools, default=str))

    def chunk(self, usage: Mapping[str, Any]) -> None:
        """Keeps the `usage` a chunk reports (the last one, with include_usage)."""
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            self.usage = (prompt, completion)

    def saw(self, items: list[StreamItem]) -> None:
        for item in items:
            chars = _chars(item)
            if chars and self.first_token_at is None:
                self.first_token_at = time.monotonic()
                MODEL_FIRST_TOKEN_SECONDS.labels(self.model).observe(self.first_token_at - self.started)
            self.output_chars += chars


def _chars(item: StreamItem) -> int:
    if isinstance(item, (TextDelta, ReasoningDelta)):
        return len(item.text)
    if isinstance(item, ToolCallsRequested):
        return sum(len(call.name) + len(call.arguments) for call in item.calls)
    return 0
