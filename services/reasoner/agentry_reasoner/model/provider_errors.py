"""The SDK's exceptions, and errors hidden in 200 responses, as the reasoner's model errors.

A provider's trouble is a model error (`model_unavailable`, `model_error`,
`context_too_long`), never `internal`: that code is kept for our own bugs.

The provider's own message goes to the log, never into the error the client sees: it
may quote what the model wrote, thinking included (llama.cpp's "Failed to parse input
at pos N: <think>…").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import openai

from agentry_reasoner.model.items import ContextTooLong, ModelError, ModelUnavailable, ProviderStreamFailed

log = logging.getLogger(__name__)

# OpenAI and OpenRouter: `context_length_exceeded`; llama.cpp: `exceed_context_size_error`.
CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error", "context_too_long"})
# vLLM ("This model's maximum context length is …"), llama.cpp, Ollama, LM Studio wordings.
CONTEXT_WORDS = re.compile(
    r"maximum context length|context length|context size|context window|prompt is too long|too many tokens",
    re.IGNORECASE,
)


def from_sdk(exc: openai.APIError) -> ModelUnavailable | ModelError:
    """What the SDK raised, classified; the SDK has already retried what it retries."""
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return ModelUnavailable(f"model unreachable: {type(exc).__name__}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return ModelUnavailable(f"model server error {exc.status_code}")
        if exc.status_code in (400, 413) and is_context_error(exc.body, exc.message):
            return ContextTooLong("the conversation does not fit the model's context window")
        _log_detail(exc.message)
        return ModelError(f"model refused the request ({exc.status_code})")
    # An APIError that is not a status error: the server sent an error event mid-stream.
    _log_detail(exc.message)
    return ProviderStreamFailed("the model failed mid-answer")


def from_body(body: Any) -> ModelUnavailable | ModelError | None:
    """An error carried in a 200 body or event (`{"error": {...}}`, vLLM's `{"object": "error"}`)."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping | str) and error:
        detail = error if isinstance(error, Mapping) else {"message": error}
    elif body.get("object") == "error":
        detail = body
    else:
        return None
    message = str(detail.get("message") or "no message")
    if is_context_error(detail, message):
        return ContextTooLong("the conversation does not fit the model's context window")
    _log_detail(message)
    return ProviderStreamFailed("the model answered with an error")


def is_context_error(body: object, message: str) -> bool:
    detail = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping):
        code, kind = detail.get("code"), detail.get("type")
        if code in CONTEXT_CODES or kind in CONTEXT_CODES:
            return True
        message = f"{message} {detail.get('message') or ''}"
    return bool(CONTEXT_WORDS.search(message))


def _log_detail(message: str) -> None:
    """The provider's words, for the operator only (see the module's docstring)."""
    log.warning("the model server reported an error", extra={"detail": _short(message)})


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."
