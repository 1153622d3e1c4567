"""Turns a `Reply` into OpenAI chat-completion payloads, streamed or whole.

The stream imitates vLLM serving a reasoning model: a role chunk, `reasoning_content`
deltas, then content deltas of a word or two, or tool calls whose arguments arrive in
pieces. Clients must assemble deltas exactly as they would for a real provider.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from agentry_offline_model.conversation import text_of
from agentry_offline_model.reply import Reply

Json = dict[str, Any]


@dataclass(frozen=True)
class Envelope:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str


def finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def estimate_usage(messages: Sequence[object], reply: Reply) -> Json:
    """Token counts estimated as words: there is no tokenizer, only a plausible number."""
    prompt = sum(len(text_of(m).split()) for m in messages)
    produced = [*reply.reasoning, reply.text or ""]
    produced += [f"{c.name} {c.arguments_json}" for c in reply.tool_calls]
    completion = sum(len(piece.split()) for piece in produced)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def head_chunks(reply: Reply, envelope: Envelope) -> Iterator[Json]:
    """The role chunk and the reasoning chunks: what a hanging model still manages to send."""
    yield chunk_of(envelope, {"role": "assistant"})
    for piece in reply.reasoning:
        yield chunk_of(envelope, {"reasoning_content": piece})


def stream_chunks(reply: Reply, envelope: Envelope, usage: Json | None = None) -> Iterator[Json]:
    """Every chunk of the stream in order; `usage` adds the final choice-less usage chunk."""
    yield from head_chunks(reply, envelope)
    if reply.tool_calls:
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call.id, "type": "function"}
            head["function"] = {"name": call.name, "arguments": ""}
            yield chunk_of(envelope, {"tool_calls": [head]})
            for part in split_arguments(call.arguments_json):
                yield chunk_of(envelope, {"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    else:
        for part in (split_words if reply.word_chunks else split_text)(reply.text or ""):
            yield chunk_of(envelope, {"content": part})
    yield chunk_of(envelope, {}, finish_reason(reply))
    if usage is not None:
        yield {**base_of(envelope), "choices": [], "usage": usage}


def completion_body(reply: Reply, envelope: Envelope, usage: Json) -> Json:
    """The non-streaming `chat.completion` object."""
    message: Json = {
        "role": "assistant",
        "content": None if reply.tool_calls else (reply.text or ""),
        "reasoning_content": "".join(reply.reasoning),
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in reply.tool_calls
        ],
    }
    choice = {"index": 0, "message": message, "finish_reason": finish_reason(reply), "logprobs": None}
    return {**base_of(envelope, "chat.completion"), "choices": [choice], "usage": usage}


def split_text(text: str) -> list[str]:
    """Pieces of one or two words (with their trailing spaces); joined they give `text`."""
    words = re.findall(r"\s*\S+\s*", text)
    pieces: list[str] = []
    start, size = 0, 1
    while start < len(words):
        pieces.append("".join(words[start : start + size]))
        start, size = start + size, 3 - size
    return pieces or ([text] if text else [])


def split_words(text: str) -> list[str]:
    """One word per piece (with its trailing spaces); joined they give `text`."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def split_arguments(arguments: str) -> list[str]:
    """The arguments JSON in two or three pieces, the way providers stream it."""
    if len(arguments) < 2:
        return [arguments]
    count = 3 if len(arguments) >= 6 else 2
    bounds = [len(arguments) * i // count for i in range(count + 1)]
    return [arguments[bounds[i] : bounds[i + 1]] for i in range(count)]


def base_of(envelope: Envelope, kind: str = "chat.completion.chunk") -> Json:
    return {"id": envelope.id, "object": kind, "created": envelope.created, "model": envelope.model}


def chunk_of(envelope: Envelope, delta: Json, finish: str | None = None) -> Json:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {**base_of(envelope), "choices": [choice]}
