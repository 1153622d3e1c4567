"""The pure parts of the OpenAI-compatible endpoint: resets, turn text, the request line."""

from __future__ import annotations

import pytest
from agentry_gateway.inbound import Rejected
from agentry_gateway.openai import request as chat_request
from agentry_gateway.openai.errors import OpenAIError, from_rejected, from_turn_failure
from agentry_gateway.openai.front import wants_http
from agentry_gateway.openai.translate import Answer, Chunks, Translator, progress
from agentry_shared.contracts.errors import ClientErrorCode


def test_deltas_stream_live_and_completion_adds_nothing() -> None:
    answer = Answer()
    assert [answer.delta("37*91 "), answer.delta("= 3367")] == ["37*91 ", "= 3367"]
    assert answer.completed("37*91 = 3367") == ""


def test_a_reset_that_repeats_the_text_shows_only_what_is_new() -> None:
    answer = Answer()
    answer.delta("one two ")
    answer.reset()
    assert answer.delta("one ") == ""
    assert answer.delta("two three") == "three"
    assert answer.completed("one two three") == ""
    assert answer.shown == "one two three"


def test_a_reset_to_other_text_shows_it_after_a_blank_line_then_streams() -> None:
    answer = Answer()
    answer.delta("Let me compute that.")
    answer.reset()
    assert answer.delta("3367") == "\n\n3367"
    assert answer.delta(" it is") == " it is"
    assert answer.completed("3367 it is") == ""


def test_a_final_text_shorter_than_what_was_shown_is_shown_whole() -> None:
    answer = Answer()
    answer.delta("one two three")
    answer.reset()
    assert answer.delta("one") == ""
    assert answer.completed("one") == "\n\none"


def _chat(*messages: tuple[str, str]) -> chat_request.ChatRequest:
    return chat_request.ChatRequest(model="agentry", messages=[{"role": r, "content": c} for r, c in messages])  # type: ignore[misc]


def test_earlier_messages_are_quoted_only_for_a_new_conversation() -> None:
    chat = _chat(("system", "be brief"), ("user", "hi\nthere"), ("assistant", "hello"), ("user", "what is 2+2?"))
    text = chat_request.turn_text(chat, new_conversation=True, max_chars=1000)
    assert text == (
        f"{chat_request.TRANSCRIPT_HEADER}\n> system: be brief\n> user: hi\n> there\n> assistant: hello\n\nwhat is 2+2?"
    )
    assert chat_request.turn_text(chat, new_conversation=False, max_chars=1000) == "what is 2+2?"


def test_the_oldest_earlier_messages_are_left_out_past_the_limit() -> None:
    chat = _chat(("user", "a" * 100), ("assistant", "b" * 10), ("user", "q"))
    text = chat_request.turn_text(chat, new_conversation=True, max_chars=200)
    assert "a" * 100 not in text and "b" * 10 in text and "1 earlier messages left out" in text


def test_the_last_message_must_be_the_users() -> None:
    with pytest.raises(OpenAIError) as refused:
        chat_request.turn_text(_chat(("assistant", "hi")), new_conversation=True, max_chars=100)
    assert (refused.value.status, refused.value.code) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"nope", "the body: Invalid JSON: expected ident at line 1 column 2"),
        (b"[1]", "the body: Input should be an object"),
        (b'{"model": "agentry", "messages": []}', "messages: List should have at least 1 item after validation, not 0"),
    ],
)
def test_a_body_that_is_not_a_chat_request_says_where(body: bytes, message: str) -> None:
    """The message names the field at fault, or the body as a whole (it began with ": ")."""
    with pytest.raises(OpenAIError) as refused:
        chat_request.parse(body, "agentry")
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, "invalid_request", message)


@pytest.mark.parametrize(
    ("line", "http"),
    [
        (b"POST /v1/chat/completions HTTP/1.1", True),
        (b"GET /v1/models HTTP/1.1", True),
        (b"GET /ws?user=a HTTP/1.1", False),
        (b"GET /v1x HTTP/1.1", False),
        (b"GET /healthz HTTP/1.1", False),
    ],
)
def test_only_v1_requests_go_to_the_http_app(line: bytes, http: bool) -> None:
    assert wants_http(line) is http


@pytest.mark.parametrize(
    ("code", "setting", "seconds", "retry_after"),
    [
        ("rate_limited", "BUDGET_USER_TURNS_PER_MINUTE", 12.3, "13"),
        ("budget_exceeded", "BUDGET_TENANT_TOKENS_PER_DAY", 3600.0, "3600"),
    ],
)
def test_a_turn_over_its_budget_is_429_naming_it_with_retry_after(
    code: ClientErrorCode, setting: str, seconds: float, retry_after: str
) -> None:
    """The budgets memory refuses a turn for (docs/protocol.md, "Turn budgets") are limits
    the client hit, not gateway bugs: a RateLimitError saying which and when to retry."""
    refused = from_rejected(Rejected(code, f"over {setting}: the message was not accepted", retry_after=seconds))
    response = refused.response()
    assert (response.status, refused.code) == (429, code)
    assert response.headers["Retry-After"] == retry_after
    assert setting in refused.message


@pytest.mark.parametrize(("code", "retry_after"), [("model_unavailable", "30"), ("memory_unavailable", "5")])
def test_a_turn_failed_for_a_service_that_is_down_says_when_to_retry(code: str, retry_after: str) -> None:
    """Before: the 503 had no `Retry-After`; the SDK retried at once into the open breaker."""
    response = from_turn_failure({"code": code, "message": "down"}).response()
    assert (response.status, response.headers["Retry-After"]) == (503, retry_after)


@pytest.mark.parametrize(
    ("refused", "final"),
    [
        (from_rejected(Rejected("conversation_limit", "over MEMORY_MAX_CONVERSATIONS_PER_USER")), True),
        (from_turn_failure({"code": "memory_limit_reached", "message": "no more"}), True),
        (from_turn_failure({"code": "cancelled", "message": "The turn was cancelled."}), True),
        (from_rejected(Rejected("rate_limited", "over a budget", retry_after=3.0)), False),
        (from_turn_failure({"code": "model_unavailable", "message": "down"}), False),
    ],
)
def test_a_refusal_that_waiting_cannot_lift_tells_the_sdk_not_to_retry(refused: OpenAIError, final: bool) -> None:
    """The SDK retries 409, 429 and 5xx unless told not to (`x-should-retry: false`)."""
    assert ("x-should-retry" in refused.response().headers) is final
    if final:
        assert refused.response().headers["x-should-retry"] == "false"


def _finished(**fields: object) -> dict[str, object]:
    return {
        "type": "tool.finished",
        "conversation_id": "c",
        "turn_id": "t",
        "tool": "calculator",
        "call_id": "call_3",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"ok": True, "elapsed_ms": 31}, "calculator done.\n"),
        (
            {"ok": False, "error": "rate_limited", "retry_after_ms": 12_000},
            "calculator failed (rate_limited; retry in 12 s).\n",
        ),
        (
            {"ok": False, "error": "rate_limited", "retry_after_ms": 11_001},
            "calculator failed (rate_limited; retry in 12 s).\n",
        ),
        ({"ok": False, "error": "tool_limit"}, "calculator failed (tool_limit).\n"),
        ({"ok": False, "error": "timeout", "retry_after_ms": None}, "calculator failed (timeout).\n"),
        ({"ok": False, "error": "failed"}, "calculator failed.\n"),  # the code would only repeat the word
        ({"ok": False}, "calculator failed.\n"),  # a frame stored before codes were sent
    ],
)
def test_a_failed_tool_says_which_limit_and_when_to_retry(fields: dict[str, object], line: str) -> None:
    """The progress line of `tool.finished` names the tool error code, and for a rate limit
    when to retry (rounded up: never sooner than the limit lifts)."""
    assert progress(_finished(**fields)) == line
    translator = Translator(
        Chunks("chatcmpl-t", 0, "agentry"), prompt="", include_usage=False, waits_for_approvals=False
    )
    assert translator.on(_finished(**fields)) == [translator.chunks.chunk({"reasoning_content": line})]
