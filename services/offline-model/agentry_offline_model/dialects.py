"""How each OpenAI-compatible server streams the same reply: the offline model speaks
the dialect chosen by OFFLINE_MODEL_DIALECT, by the request's model name
(`agentry-offline@ollama`) or by a `[[dialect:NAME]]` hook in the last user message (so
one stack serves every dialect in the end-to-end tests). Streamed and whole answers
both follow it.

Each dialect follows its server's documented format (docs/models.md lists the sources);
the faults below are injected on request, once per distinct request, so a client that
retries gets the answer on its next try:

- `[[stream-error]]`: the server's error event after the reasoning (llama.cpp's "Invalid
  diff" event, OpenRouter's error chunk with finish_reason "error", vLLM's object=error);
- `[[call-no-id]]`: tool calls without an `id`; `[[call-stray-brace]]`: a `{` of text
  before the call, as small models write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

from agentry_offline_model.conversation import role_of, text_of
from agentry_offline_model.reply import Reply
from agentry_offline_model.streaming import (
    Envelope,
    base_of,
    chunk_of,
    completion_body,
    finish_reason,
    split_arguments,
    split_text,
    split_words,
    stream_chunks,
)

Dialect = Literal["vllm", "llamacpp", "ollama", "openrouter", "inline-think", "open-think", "openai-reasoning"]
DIALECTS: tuple[str, ...] = get_args(Dialect)
Json = dict[str, Any]
Event = Json | str  # a str is a raw SSE line (a comment)

_HOOK = re.compile(r"\[\[dialect:([a-z-]+)\]\]")
FAULTS = ("stream-error", "call-no-id", "call-stray-brace")
# How DeepSeek-R1's thinking starts when its template opened the tag: with words, which a
# client would see stream (the sentinel's `[` alone could be a structured call's start).
OPEN_THINK_START = "Okay, "


def dialect_of(model: str, messages: Sequence[object], default: Dialect) -> Dialect:
    users = [m for m in messages if role_of(m) == "user"]
    hook = _HOOK.search(text_of(users[-1])) if users else None
    for name in (hook.group(1) if hook else None, model.partition("@")[2]):
        if name in DIALECTS:
            return name  # type: ignore[return-value]
    return default


def faults_of(messages: Sequence[object]) -> set[str]:
    users = [m for m in messages if role_of(m) == "user"]
    text = text_of(users[-1]) if users else ""
    return {fault for fault in FAULTS if f"[[{fault}]]" in text}


def error_event(dialect: Dialect, envelope: Envelope) -> Json:
    """What each server sends when it fails mid-stream."""
    if dialect == "vllm":
        return {
            "object": "error",
            "message": "offline model: engine failure",
            "type": "InternalServerError",
            "code": 500,
        }
    if dialect == "openrouter":
        choice = {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
        error = {"code": "server_error", "message": "offline model: provider disconnected"}
        return {**base_of(envelope), "error": error, "choices": [choice]}
    if dialect == "llamacpp":
        return {"error": {"code": 500, "message": "Invalid diff: now finding less tool calls!", "type": "server_error"}}
    return {"error": {"message": "offline model: stream failed", "type": "server_error", "code": 500}}


def dialect_chunks(
    dialect: Dialect, reply: Reply, envelope: Envelope, usage: Json | None, faults: set[str]
) -> Iterator[Event]:
    """Every event of the stream, without the final `[DONE]`."""
    if dialect == "vllm" and not faults:
        yield from stream_chunks(reply, envelope, usage)
        return
    yield from _head(dialect, reply, envelope)
    if "stream-error" in faults:
        yield error_event(dialect, envelope)
        return
    if reply.tool_calls:
        if "call-stray-brace" in faults:
            yield chunk_of(envelope, {"content": "{"})
        yield from _calls(dialect, reply, envelope, "call-no-id" in faults)
    else:
        for part in (split_words if reply.word_chunks else split_text)(reply.text or ""):
            yield chunk_of(envelope, _with_role(dialect, {"content": part}))
    finish = "stop" if dialect == "ollama" else finish_reason(reply)
    last = chunk_of(envelope, _with_role(dialect, {"content": ""} if dialect == "ollama" else {}), finish)
    if dialect == "llamacpp":
        last["timings"] = {"prompt_n": 1, "predicted_n": 1}
    yield last
    if usage is not None or dialect == "openrouter":
        yield {**base_of(envelope), "choices": [], "usage": _usage(dialect, reply, usage)}


def dialect_completion(dialect: Dialect, reply: Reply, envelope: Envelope, usage: Json) -> Json:
    """The non-streaming `chat.completion`, with the thinking where the dialect's server puts it."""
    body = completion_body(reply, envelope, _usage(dialect, reply, usage))
    message: Json = body["choices"][0]["message"]
    reasoning = message.pop("reasoning_content")
    if dialect in ("vllm", "llamacpp"):
        message["reasoning_content"] = reasoning
    elif dialect == "ollama":
        message["reasoning"] = reasoning
    elif dialect == "openrouter":
        details = [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]
        message.update(reasoning=reasoning, reasoning_details=details)
    elif dialect == "inline-think":
        message["content"] = f"<think>{reasoning}</think>\n\n{message['content'] or ''}"
    elif dialect == "open-think":
        message["content"] = f"{OPEN_THINK_START}{reasoning}</think>\n\n{message['content'] or ''}"
    return body  # openai-reasoning: the reasoning stays on the provider's side (its count in usage)


def _head(dialect: Dialect, reply: Reply, envelope: Envelope) -> Iterator[Event]:
    if dialect == "openrouter":
        yield ": OPENROUTER PROCESSING"
    yield chunk_of(envelope, {"role": "assistant", "content": ""})
    if dialect in ("inline-think", "open-think"):
        # The tags cut mid-word across chunks, as a server without a reasoning parser sends
        # them; `open-think`: the chat template opened `<think>` (DeepSeek-R1 and its
        # distills), so the reply starts inside the thinking and only its end shows.
        opening = "<think>" if dialect == "inline-think" else OPEN_THINK_START
        text = opening + "".join(reply.reasoning) + "</think>\n\n"
        for at in range(0, len(text), 5):
            yield chunk_of(envelope, {"content": text[at : at + 5]})
        return
    if dialect == "openai-reasoning":
        return  # the reasoning stays on the provider's side
    for piece in reply.reasoning:
        if dialect in ("vllm", "llamacpp"):
            yield chunk_of(envelope, {"reasoning_content": piece})
        elif dialect == "ollama":
            yield chunk_of(envelope, {"role": "assistant", "content": "", "reasoning": piece})
        else:
            details = [{"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}]
            yield chunk_of(
                envelope, {"role": "assistant", "content": "", "reasoning": piece, "reasoning_details": details}
            )


def _calls(dialect: Dialect, reply: Reply, envelope: Envelope, no_id: bool) -> Iterator[Event]:
    if dialect == "ollama":
        # Whole calls in one delta, every one at index 0 (told apart by id only).
        calls = [
            {"index": 0, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            | ({} if no_id else {"id": c.id})
            for c in reply.tool_calls
        ]
        yield chunk_of(envelope, {"role": "assistant", "content": "", "tool_calls": calls})
        return
    for index, call in enumerate(reply.tool_calls):
        head: Json = {"index": index, "type": "function", "function": {"name": call.name, "arguments": ""}}
        if not no_id:
            head["id"] = call.id
        yield chunk_of(envelope, {"tool_calls": [head]})
        for part in split_arguments(call.arguments_json):
            yield chunk_of(envelope, {"tool_calls": [{"index": index, "function": {"arguments": part}}]})


def _with_role(dialect: Dialect, delta: Json) -> Json:
    return {"role": "assistant", **delta} if dialect == "ollama" else delta


def _usage(dialect: Dialect, reply: Reply, usage: Json | None) -> Json:
    usage = dict(usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    if dialect == "openai-reasoning":
        hidden = sum(len(piece.split()) for piece in reply.reasoning)
        usage["completion_tokens_details"] = {"reasoning_tokens": hidden}
    return usage
