"""The chat-completions shape of our messages, one at a time or a window at once."""

from __future__ import annotations

import pytest
from agentry_shared.contracts.chat import ChatMessage, from_json, to_openai
from pydantic import ValidationError


def test_a_window_in_one_pass_is_each_message_as_the_api_takes_it() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"e":"1+1"}'}}
    window = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="what is 1+1?", name="ada"),
        ChatMessage(role="assistant", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="call_1", content="2"),
        ChatMessage(role="assistant", content="2"),
    ]
    assert to_openai(window) == [m.to_openai() for m in window]
    assert to_openai(window)[2] == {"role": "assistant", "tool_calls": [call]}  # no nulls sent
    assert to_openai([]) == []


def test_stored_messages_are_read_back_in_one_pass() -> None:
    window = [ChatMessage(role="user", content='say "hi"\n'), ChatMessage(role="assistant", content="hi")]
    assert from_json([m.model_dump_json(exclude_none=True) for m in window]) == window
    assert from_json([]) == []
    with pytest.raises(ValidationError):
        from_json(['{"role": "wizard"}'])
