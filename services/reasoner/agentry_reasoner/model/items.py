"""What the agent loop sees of a model call: a stream of items, and the errors that end it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agentry_shared.contracts.errors import TurnFailureCode


@dataclass(frozen=True)
class ReasoningDelta:
    """Thinking text (never shown). Empty: the model is working but shows no reasoning yet
    (sent when the request is answered, so the indicator runs until the first token)."""

    text: str


@dataclass(frozen=True)
class HiddenReasoning:
    """The provider reasoned but kept the text (OpenAI's reasoning models): only the count
    of reasoning tokens its usage reports. For the audit record, never for a client."""

    tokens: int


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class AnswerReset:
    """Drop the answer text this step has streamed so far: the step starts over after a
    provider error (`retry`), or that text turned out to be thinking (`thinking`)."""

    reason: str


@dataclass(frozen=True)
class ToolCall:
    call_id: str  # "" when the server sent none: the agent names it by turn, step and index
    name: str
    arguments: str  # JSON text as the model wrote it; validated before dispatch


@dataclass(frozen=True)
class ToolCallsRequested:
    calls: list[ToolCall]


StreamItem = ReasoningDelta | HiddenReasoning | TextDelta | AnswerReset | ToolCallsRequested


class ModelUnavailable(Exception):
    """The model could not be reached or kept failing; the turn fails with this code."""

    code: ClassVar[TurnFailureCode] = "model_unavailable"


class ProviderStreamFailed(ModelUnavailable):
    """The provider failed after it began to answer: an error event in the stream, an
    error body under status 200, a stream cut before its `finish_reason`, no choices.
    The SDK retries none of these; `GuardedModel` does."""


class ModelError(Exception):
    """The model answered with an error it will repeat (bad request, auth)."""

    code: ClassVar[TurnFailureCode] = "model_error"


class ContextTooLong(ModelError):
    """The prompt does not fit the model's context window; the agent trims it once."""

    code: ClassVar[TurnFailureCode] = "context_too_long"


class Model(Protocol):
    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]: ...
