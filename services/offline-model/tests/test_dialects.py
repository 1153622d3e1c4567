"""Each dialect's wire shape, chunk by chunk: where the thinking goes, how calls arrive,
how the stream ends; the whole (non-streaming) answer in the same dialect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentry_offline_model.dialects import (
    DIALECTS,
    Dialect,
    dialect_chunks,
    dialect_completion,
    dialect_of,
    faults_of,
)
from agentry_offline_model.reply import Reply, ToolCall
from agentry_offline_model.server import FiredFaults, _once
from agentry_offline_model.streaming import Envelope

ENVELOPE = Envelope("chatcmpl-1", 1, "m")
THOUGHT = "[reasoning] the user wants a product. "
TEXT_REPLY = Reply(reasoning=[THOUGHT], text="It is 3367.")
CALL = ToolCall("call_1", "calculator", '{"expression": "37*91"}')
CALL_REPLY = Reply(reasoning=[THOUGHT], tool_calls=[CALL, ToolCall("call_2", "calculator", '{"expression": "2*3"}')])
USAGE = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}

Json = dict[str, Any]


def events(
    dialect: Dialect, reply: Reply, usage: Json | None = None, faults: frozenset[str] = frozenset()
) -> list[Any]:
    return list(dialect_chunks(dialect, reply, ENVELOPE, usage, set(faults)))


def deltas(stream: list[Any]) -> list[Json]:
    return [e["choices"][0]["delta"] for e in stream if isinstance(e, dict) and e.get("choices")]


def joined(stream: list[Any], field: str) -> str:
    return "".join(d.get(field) or "" for d in deltas(stream))


def finishes(stream: list[Any]) -> list[str]:
    return [e["choices"][0]["finish_reason"] for e in stream if isinstance(e, dict) and e.get("choices")][-1:]


def call_pieces(stream: list[Any]) -> list[Json]:
    return [piece for d in deltas(stream) for piece in d.get("tool_calls") or []]


@pytest.mark.parametrize(
    ("dialect", "field"),
    [
        ("vllm", "reasoning_content"),
        ("llamacpp", "reasoning_content"),
        ("ollama", "reasoning"),
        ("openrouter", "reasoning"),
    ],
)
def test_separate_reasoning_field_and_plain_content(dialect: Dialect, field: str) -> None:
    stream = events(dialect, TEXT_REPLY)
    assert joined(stream, field) == THOUGHT
    assert joined(stream, "content") == "It is 3367."
    assert finishes(stream) == ["stop"]


def test_inline_think_puts_the_tags_in_content_cut_mid_tag() -> None:
    stream = events("inline-think", TEXT_REPLY)
    content = [d.get("content") or "" for d in deltas(stream)]
    assert "".join(content) == f"<think>{THOUGHT}</think>\n\nIt is 3367."
    assert "<think>" not in content  # the tag arrives in pieces
    assert not joined(stream, "reasoning_content") and not joined(stream, "reasoning")


def test_open_think_starts_inside_the_thinking_and_only_its_end_shows() -> None:
    stream = events("open-think", TEXT_REPLY)
    content = "".join(d.get("content") or "" for d in deltas(stream))
    assert content == f"Okay, {THOUGHT}</think>\n\nIt is 3367."


def test_openai_reasoning_sends_no_reasoning_and_counts_it_in_usage() -> None:
    stream = events("openai-reasoning", TEXT_REPLY, USAGE)
    assert joined(stream, "content") == "It is 3367."
    assert THOUGHT not in json.dumps(stream)
    usage = stream[-1]["usage"]
    assert (
        stream[-1]["choices"] == [] and usage["completion_tokens_details"]["reasoning_tokens"] == 6
    )  # words, the offline model's tokens


def test_openai_reasoning_without_usage_asked_sends_no_usage() -> None:
    assert not any(isinstance(e, dict) and "usage" in e for e in events("openai-reasoning", TEXT_REPLY))


def test_openrouter_comments_and_usage_always() -> None:
    stream = events("openrouter", TEXT_REPLY)
    assert stream[0] == ": OPENROUTER PROCESSING"
    assert "usage" in stream[-1]
    assert any(d.get("reasoning_details") for d in deltas(stream))


@pytest.mark.parametrize(
    "dialect", ["vllm", "llamacpp", "openrouter", "inline-think", "open-think", "openai-reasoning"]
)
def test_calls_stream_with_id_and_name_first_then_arguments_in_pieces(dialect: Dialect) -> None:
    pieces = call_pieces(events(dialect, CALL_REPLY))
    heads = [p for p in pieces if "id" in p]
    assert [(h["index"], h["id"], h["function"]["name"]) for h in heads] == [
        (0, "call_1", "calculator"),
        (1, "call_2", "calculator"),
    ]
    first = "".join(p["function"]["arguments"] for p in pieces if p["index"] == 0)
    assert json.loads(first) == {"expression": "37*91"}
    assert len([p for p in pieces if p["index"] == 0]) > 2  # arguments arrive in pieces
    assert finishes(events(dialect, CALL_REPLY)) == ["tool_calls"]


def test_ollama_sends_each_call_whole_at_index_zero_and_finishes_with_stop() -> None:
    stream = events("ollama", CALL_REPLY)
    pieces = call_pieces(stream)
    assert [(p["index"], p["id"], json.loads(p["function"]["arguments"])) for p in pieces] == [
        (0, "call_1", {"expression": "37*91"}),
        (0, "call_2", {"expression": "2*3"}),
    ]
    assert finishes(stream) == ["stop"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_call_faults_drop_ids_and_add_a_stray_brace(dialect: Dialect) -> None:
    stream = events(dialect, CALL_REPLY, faults=frozenset({"call-no-id", "call-stray-brace"}))
    assert not any("id" in p for p in call_pieces(stream))
    assert joined(stream, "content").endswith("{")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stream_error_comes_after_the_thinking_and_ends_the_stream(dialect: Dialect) -> None:
    stream = events(dialect, CALL_REPLY, faults=frozenset({"stream-error"}))
    last = stream[-1]
    assert last.get("object") == "error" or "error" in last
    assert not call_pieces(stream)


@pytest.mark.parametrize(
    ("dialect", "where"),
    [
        ("vllm", "reasoning_content"),
        ("llamacpp", "reasoning_content"),
        ("ollama", "reasoning"),
        ("openrouter", "reasoning"),
        ("inline-think", "content"),
        ("open-think", "content"),
        ("openai-reasoning", None),
    ],
)
def test_the_whole_answer_puts_the_thinking_where_the_dialect_does(dialect: Dialect, where: str | None) -> None:
    body = dialect_completion(dialect, TEXT_REPLY, ENVELOPE, dict(USAGE))
    message = body["choices"][0]["message"]
    holders = [key for key, value in message.items() if isinstance(value, str) and THOUGHT in value]
    assert holders == ([where] if where else [])
    if dialect == "inline-think":
        assert message["content"] == f"<think>{THOUGHT}</think>\n\nIt is 3367."
    elif dialect == "open-think":
        assert message["content"] == f"Okay, {THOUGHT}</think>\n\nIt is 3367."
    else:
        assert message["content"] == "It is 3367."
    if dialect == "openai-reasoning":
        assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 6  # words, the offline model's tokens


def test_the_dialect_comes_from_the_hook_then_the_model_name_then_the_default() -> None:
    hooked = [{"role": "user", "content": "hi [[dialect:ollama]]"}]
    plain = [{"role": "user", "content": "hi"}]
    assert dialect_of("agentry-offline@llamacpp", hooked, "vllm") == "ollama"
    assert dialect_of("agentry-offline@llamacpp", plain, "vllm") == "llamacpp"
    assert dialect_of("agentry-offline@nonsense", plain, "vllm") == "vllm"
    assert faults_of([{"role": "user", "content": "x [[stream-error]] [[call-no-id]]"}]) == {
        "stream-error",
        "call-no-id",
    }


def test_a_stream_fault_fires_once_per_request_and_the_memory_is_bounded() -> None:
    fired = FiredFaults(3)
    assert _once({"stream-error"}, "a", fired) == {"stream-error"}
    assert _once({"stream-error"}, "a", fired) == set()
    for key in ("b", "c", "d"):
        _once({"stream-error"}, key, fired)
    assert len(fired) == 3
    assert _once({"stream-error"}, "a", fired) == {"stream-error"}  # forgotten: the least recent went first
    assert _once({"call-no-id"}, "e", fired) == {"call-no-id"}  # only the stream error is once-only
