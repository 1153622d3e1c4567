"""A chat-completions request, and the turn text it becomes (docs/openai.md, "Turns").

Pure: validated here, refused with an `OpenAIError` saying what to change. Parameters the
agent has no use for (temperature, max_tokens, user, ...) are accepted and ignored, as
OpenAI-compatible servers do; ones it cannot honour are refused (`n` other than 1, client
`tools`: the agent uses its own; a JSON `response_format`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentry_gateway.openai.errors import OpenAIError

TRANSCRIPT_HEADER = "Earlier messages of this conversation, quoted from the client for context:"
SKIPPED = "> ({count} earlier messages left out: over the length limit)"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Lenient):
    include_usage: bool | None = False


class ChatRequest(_Lenient):
    # Optional parameters may be null, as in OpenAI's API (clients send `"n": null` for unset).
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = 1
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and bool(self.stream_options.include_usage)

    @property
    def conversation_id(self) -> str | None:
        value = (self.metadata or {}).get("conversation_id")
        return value if isinstance(value, str) and value else None


def parse(body: bytes, model_name: str) -> ChatRequest:
    try:
        request = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"{where}: {first['msg']}" if where else f"the body: {first['msg']}"  # not JSON, not an object
        raise OpenAIError(400, "invalid_request", message, param=where or None) from exc
    if request.model != model_name:
        message = f"no model {request.model!r} here: this endpoint serves {model_name!r} (GET /v1/models)"
        raise OpenAIError(404, "model_not_found", message, param="model")
    if request.n not in (None, 1):
        raise OpenAIError(400, "unsupported_parameter", "n must be 1: the agent gives one answer", param="n")
    if request.tools:
        message = "client tools are not supported: the agent calls its own tools"
        raise OpenAIError(400, "unsupported_parameter", message, param="tools")
    shape = (request.response_format or {}).get("type", "text")
    if shape != "text":
        # Ignored, a client parsing the answer as JSON (the SDK's `parse`) would fail on prose.
        message = f"response_format {shape!r} is not supported: the agent answers in text"
        raise OpenAIError(400, "unsupported_parameter", message, param="response_format")
    return request


def text_of(message: Message, index: int) -> str:
    """A message's text: a string, or its `text` parts (other parts are refused)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            param = f"messages.{index}.content"
            raise OpenAIError(400, "unsupported_parameter", "only text content parts are supported", param=param)
        texts.append(part["text"])
    return "\n".join(texts)


def turn_text(request: ChatRequest, *, new_conversation: bool, max_chars: int) -> str:
    """The last message (the user's) is the turn. Starting a conversation, the earlier
    messages come first as a quoted transcript, the oldest left out past `max_chars`;
    continuing one, they are ignored: memory has the conversation."""
    last = len(request.messages) - 1
    final = request.messages[last]
    text = text_of(final, last)
    if final.role != "user" or not text.strip():
        raise OpenAIError(400, "invalid_request", "the last message must be the user's, with text", param="messages")
    if len(text) > max_chars:
        message = f"the last message is over GATEWAY_MAX_TEXT_CHARS ({max_chars} characters)"
        raise OpenAIError(400, "text_too_long", message, param="messages")
    if not new_conversation or last == 0:
        return text
    lines = [_quoted(m.role, text_of(m, i)) for i, m in enumerate(request.messages[:last])]
    return _fit(lines, text, max_chars)


def _quoted(role: str, text: str) -> str:
    body = "\n> ".join(text.splitlines() or [""])
    return f"> {role}: {body}"


def _fit(lines: list[str], text: str, max_chars: int) -> str:
    """Header, as many of the latest transcript lines as fit, then the user's text."""
    kept: list[str] = []
    size = len(TRANSCRIPT_HEADER) + len(text) + len(SKIPPED) + 16
    for line in reversed(lines):
        if size + len(line) + 1 > max_chars:
            break
        kept.insert(0, line)
        size += len(line) + 1
    skipped = len(lines) - len(kept)
    if not kept:
        return text
    head = [TRANSCRIPT_HEADER, *([SKIPPED.format(count=skipped)] if skipped else []), *kept]
    return "\n".join(head) + "\n\n" + text
