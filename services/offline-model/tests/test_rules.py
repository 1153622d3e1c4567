"""The offline model's rules, tested without a server: same request, same reply."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentry_offline_model.arithmetic import find_expressions
from agentry_offline_model.rules import REASONING_SENTINEL, Reply, reply_to
from agentry_offline_model.streaming import Envelope, split_arguments, split_text, stream_chunks


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


TOOLS = [tool("calculator"), tool("current_time")]


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def args(reply: Reply) -> list[dict[str, Any]]:
    return [json.loads(call.arguments_json) for call in reply.tool_calls]


def test_arithmetic_becomes_one_calculator_call() -> None:
    reply = reply_to([{"role": "system", "content": "be nice"}, user("what is 37*91?")], TOOLS)
    assert reply.text is None
    assert [c.name for c in reply.tool_calls] == ["calculator"]
    assert args(reply) == [{"expression": "37*91"}]
    assert reply.tool_calls[0].id.startswith("call_")


def test_two_expressions_become_two_calls_with_distinct_ids() -> None:
    reply = reply_to([user("Compute (2+3)*4 and also 2  **  10, then 37*91 again: 37*91")], TOOLS)
    assert args(reply) == [{"expression": "(2+3)*4"}, {"expression": "2 ** 10"}, {"expression": "37*91"}]
    assert len({c.id for c in reply.tool_calls}) == 3


def test_calls_are_capped_at_four() -> None:
    reply = reply_to([user("1+1, 2+2, 3+3, 4+4, 5+5")], TOOLS)
    assert len(reply.tool_calls) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5 / 5 please", ["12.5 / 5"]),
        ("(is it 2+3)", ["2+3"]),
        ("10 % 3 and -4 + 1", ["10 % 3", "-4 + 1"]),
        ("I have 3 cats and 4 dogs", []),
        ("version 1.2.3", []),
    ],
)
def test_find_expressions(text: str, expected: list[str]) -> None:
    assert find_expressions(text) == expected


def test_tool_call_ids_are_deterministic() -> None:
    messages = [user("what is 6*7")]
    assert reply_to(messages, TOOLS) == reply_to(messages, TOOLS)
    assert reply_to([user("what is 6*8")], TOOLS).tool_calls[0].id != reply_to(messages, TOOLS).tool_calls[0].id


def test_time_question_calls_current_time() -> None:
    reply = reply_to([user("What's the date today?")], TOOLS)
    assert [(c.name, c.arguments_json) for c in reply.tool_calls] == [("current_time", "{}")]


def after_tools(*results: tuple[str, str]) -> list[dict[str, Any]]:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps({"expression": e})}}
        for i, (name, e) in enumerate([("calculator", "37*91"), ("calculator", "1/0")][: len(results)])
    ]
    tool_msgs = [{"role": "tool", "tool_call_id": f"c{i}", "content": c} for i, (_, c) in enumerate(results)]
    return [user("what is 37*91 and 1/0"), {"role": "assistant", "content": None, "tool_calls": calls}, *tool_msgs]


def test_tool_result_is_stated() -> None:
    reply = reply_to(after_tools(("calculator", "3367")), TOOLS)
    assert reply.tool_calls == []
    assert reply.text == "37*91 = 3367."


def test_tool_failure_is_reported() -> None:
    reply = reply_to(after_tools(("calculator", '{"result": 3367}'), ("calculator", '{"error": "division by zero"}')))
    assert reply.text is not None
    assert "37*91 = 3367." in reply.text
    assert "calculator tool failed" in reply.text and "division by zero" in reply.text


def test_other_tool_result_names_the_tool() -> None:
    messages = [
        user("what time is it"),
        {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "current_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": [{"type": "text", "text": "2025-01-01T00:00:00Z"}]},
    ]
    assert reply_to(messages, TOOLS).text == "current_time returned: 2025-01-01T00:00:00Z"


def test_previous_question_quotes_the_context() -> None:
    messages = [
        user("what is 37*91?"),
        {"role": "assistant", "content": "37*91 = 3367."},
        user("What was my previous question?"),
    ]
    reply = reply_to(messages, TOOLS)
    assert reply.text == 'You previously asked: "what is 37*91?" I answered: "37*91 = 3367."'


def test_previous_question_without_context_says_so() -> None:
    reply = reply_to([user("what did I ask before?")], TOOLS)
    assert reply.text is not None and "no previous message" in reply.text


def test_no_tools_offered_gives_text() -> None:
    reply = reply_to([user("hello"), {"role": "assistant", "content": "hi"}, user("what is 2+2")], [])
    assert reply.tool_calls == []
    assert reply.text is not None
    assert 'You said: "what is 2+2"' in reply.text and "(context: 2 earlier messages)" in reply.text


def test_reasoning_has_sentinel_and_two_to_four_chunks() -> None:
    for messages in ([user("hi")], [user("3*3")], after_tools(("calculator", "3367")), []):
        reply = reply_to(messages, TOOLS)
        assert 2 <= len(reply.reasoning) <= 4
        assert reply.reasoning[0].startswith(REASONING_SENTINEL)
        assert REASONING_SENTINEL not in (reply.text or "")


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{}],
        [None, 3, "x"],
        [{"role": "wizard", "content": {"odd": True}}],
        [{"role": "user"}],
        [{"role": "user", "content": [{"type": "image_url"}, "plain part", {"text": 5}]}],
        [{"role": "tool", "content": None}],
        [{"role": "assistant", "tool_calls": "nonsense"}, {"role": "tool", "tool_call_id": 7}],
    ],
)
def test_odd_input_still_gets_a_text_reply(messages: list[Any]) -> None:
    reply = reply_to(messages, [{"weird": 1}, "calculator"])
    assert reply.text and not reply.tool_calls


def test_failure_hooks() -> None:
    assert reply_to([user("boom [[model-error]]")]).fail_status == 500
    assert reply_to([user("[[model-slow:2.5]] hi")]).delay_s == 2.5
    assert reply_to([user("[[model-slow:999]]")]).delay_s == 120.0
    assert reply_to([user("fine")]).fail_status is None


def test_stream_pieces_reassemble() -> None:
    text = 'You said: "hi".  Two  spaces stay.'
    assert "".join(split_text(text)) == text
    assert all(1 <= len(piece.split()) <= 2 for piece in split_text(text))
    assert "".join(split_arguments('{"expression": "37*91"}')) == '{"expression": "37*91"}'
    assert len(split_arguments("{}")) == 2


def test_stream_chunks_shape() -> None:
    reply = reply_to([user("2+2 and 3*3")], TOOLS)
    chunks = list(stream_chunks(reply, Envelope("id1", 1, "m"), {"prompt_tokens": 1}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 1}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    heads = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [h["index"] for h in heads if "id" in h] == [0, 1]


def test_count_to_n_streams_one_number_per_chunk() -> None:
    reply = reply_to([user("please count to 12")], TOOLS)
    assert reply.text == " ".join(str(n) for n in range(1, 13)) and reply.word_chunks
    chunks = list(stream_chunks(reply, Envelope("id", 1, "m")))
    contents = [c["choices"][0]["delta"]["content"] for c in chunks if "content" in c["choices"][0]["delta"]]
    assert [piece.strip() for piece in contents] == [str(n) for n in range(1, 13)]


def test_count_is_capped_at_500_and_needs_a_positive_number() -> None:
    assert (reply_to([user("Count to 100000")]).text or "").split() == [str(n) for n in range(1, 501)]
    assert (reply_to([user("count to 0")]).text or "").startswith("You said:")


def test_model_hang_hook_keeps_the_reply() -> None:
    reply = reply_to([user("[[model-hang]] what is 2+2")], TOOLS)
    assert reply.hang and [c.name for c in reply.tool_calls] == ["calculator"]
    assert not reply_to([user("fine")]).hang


def test_time_in_a_city_calls_the_mcp_time_tool_when_offered() -> None:
    reply = reply_to([user("What time is it in Tokyo?")], [*TOOLS, tool("time__get_current_time")])
    assert [call.name for call in reply.tool_calls] == ["time__get_current_time"]
    assert args(reply) == [{"timezone": "Asia/Tokyo"}]
    # Not offered: the built-in current_time answers; an unknown city: no zone is guessed.
    assert [call.name for call in reply_to([user("What time is it in Tokyo?")], TOOLS).tool_calls] == ["current_time"]
    unknown = reply_to([user("what time is it in Atlantis?")], [tool("time__get_current_time")])
    assert unknown.tool_calls == []
