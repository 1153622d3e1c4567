"""The OpenAI-compatible endpoint through the official `openai` SDK, against the real stack:
sync and async, streamed and not, conversations continued by header, OpenAI-shaped
errors, and a dropped stream cancelling its turn (docs/openai.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel
from websockets.asyncio.client import connect

from tests.client import next_frame, send
from tests.stack import Stack

pytestmark = pytest.mark.e2e

MODEL = "agentry"
HEADER = "x-agentry-conversation-id"


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def sync_client(stack: Stack, name: str = "dev") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.http("gateway", "/v1"), api_key="unused", default_headers={"x-agentry-user": name}
    )


def async_client(stack: Stack, name: str = "dev", max_retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.http("gateway", "/v1"),
        api_key="unused",
        default_headers={"x-agentry-user": name},
        max_retries=max_retries,
    )


def test_models_lists_the_agent(stack: Stack) -> None:
    assert [m.id for m in sync_client(stack).models.list()] == [MODEL]


def test_sync_completion_answers_and_names_its_conversation(stack: Stack) -> None:
    raw = sync_client(stack).chat.completions.with_raw_response.create(model=MODEL, messages=user("what is 37*91?"))
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert "3367" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert len(raw.headers[HEADER]) == 32


def test_sync_stream_gives_progress_then_the_answer(stack: Stack) -> None:
    chunks = list(
        sync_client(stack).chat.completions.create(
            model=MODEL, messages=user("what is 37*91?"), stream=True, stream_options={"include_usage": True}
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    progress = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert "3367" in content
    assert "Using calculator…" in progress
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_async_completion_and_stream(stack: Stack) -> None:
    client = async_client(stack)
    completion = await client.chat.completions.create(model=MODEL, messages=user("what is 37*91?"))
    assert "3367" in (completion.choices[0].message.content or "")
    stream = await client.chat.completions.create(model=MODEL, messages=user("what is 37*91?"), stream=True)
    content = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "3367" in "".join(content)


def test_a_conversation_continues_by_header(stack: Stack) -> None:
    client = sync_client(stack)
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("what is 37*91?"))
    conversation = first.headers[HEADER]
    second = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=user("what was my previous question?"), extra_headers={HEADER: conversation}
    )
    assert second.headers[HEADER] == conversation
    assert "what is 37*91?" in (second.parse().choices[0].message.content or "")


def test_earlier_messages_start_a_new_conversation_as_a_transcript(stack: Stack) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "what is 37*91?"},
        {"role": "assistant", "content": "37*91 = 3367."},
        {"role": "user", "content": "what is 2+2?"},
    ]
    completion = sync_client(stack).chat.completions.create(model=MODEL, messages=messages)
    content = completion.choices[0].message.content or ""
    assert "2+2 = 4" in content
    # The model works on the whole turn text: it read the quoted question too.
    assert "37*91 = 3367" in content, content


def test_errors_are_openai_shaped(stack: Stack) -> None:
    client = sync_client(stack)
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert unknown_model.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as unknown_conversation:
        client.chat.completions.create(model=MODEL, messages=user("hi"), extra_headers={HEADER: "f" * 32})
    assert unknown_conversation.value.code == "not_found"
    with pytest.raises(openai.BadRequestError) as not_user:
        client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "hi"}])
    assert not_user.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model=MODEL, messages=user("hi"), n=2)
    assert many.value.code == "unsupported_parameter"
    assert many.value.body == {
        "message": "n must be 1: the agent gives one answer",
        "type": "invalid_request_error",
        "param": "n",
        "code": "unsupported_parameter",
    }


class Answer(BaseModel):
    value: int


def test_a_json_response_format_is_refused_not_ignored(stack: Stack) -> None:
    """The agent answers in prose: asked for JSON, it says so. It ignored the format, and
    the SDK's `parse` failed on the prose with a validation error that did not say why."""
    client = sync_client(stack, "oa-json")  # a user of its own: "dev" meets its tool rate in a full run
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.parse(model=MODEL, messages=user("what is 2+2?"), response_format=Answer)
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "response_format")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=user("hi"), response_format={"type": "json_object"})
    text = client.chat.completions.create(model=MODEL, messages=user("what is 2+2?"), response_format={"type": "text"})
    assert "4" in (text.choices[0].message.content or "")


def test_another_users_conversation_is_forbidden(stack: Stack) -> None:
    first = sync_client(stack, "oa-alice").chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sync_client(stack, "oa-bob").chat.completions.create(
            model=MODEL, messages=user("hi"), extra_headers={HEADER: first.headers[HEADER]}
        )
    assert refused.value.code == "forbidden"


async def test_a_dropped_stream_cancels_its_turn(slow_stack: Stack) -> None:
    client = async_client(slow_stack, "oa-dropper")
    response = await client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=user("count to 200"), stream=True
    ).__aenter__()
    conversation = response.headers[HEADER]
    seen = ""
    async for chunk in await response.parse():
        seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if len(seen.split()) >= 5:
            break
    await response.http_response.aclose()  # the client goes away mid-answer
    ended = await _turn_end(slow_stack, conversation, "oa-dropper")
    assert ended["type"] == "turn.failed" and ended["error"]["code"] == "cancelled", ended


async def test_a_turn_cancelled_from_a_socket_is_not_rerun_by_the_sdk(slow_stack: Stack) -> None:
    """The SDK retries a 409; a cancelled turn's says not to (`x-should-retry: false`). It
    was retried: the cancel was undone, the turn ran again and the SDK returned its answer."""
    name = "oa-cancelled"
    client = async_client(slow_stack, name, max_retries=2)  # the SDK's default
    first = await client.chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    conversation, first_turn = first.headers[HEADER], first.parse().id.removeprefix("chatcmpl-")
    asking = asyncio.create_task(
        client.chat.completions.create(model=MODEL, messages=user("count to 200"), extra_headers={HEADER: conversation})
    )
    async with connect(f"{slow_stack.ws_url}?user={name}") as ws:
        await send(ws, {"type": "resume", "conversation_id": conversation})
        async with asyncio.timeout(30):
            while (frame := await next_frame(ws)).get("turn_id") in (None, first_turn):
                pass
        await send(ws, {"type": "cancel", "turn_id": frame["turn_id"]})
        with pytest.raises(openai.ConflictError) as cancelled:
            await asking
    assert cancelled.value.code == "cancelled"
    assert cancelled.value.response.headers["x-should-retry"] == "false"


async def test_a_failed_turn_names_its_new_conversation(stack: Stack) -> None:
    """Every answer carries its conversation, a failed turn's too: the client can resume it
    (the failure, the user's message in it). The error response had no id."""
    with pytest.raises(openai.InternalServerError) as failed:
        await async_client(stack, "oa-failed").chat.completions.create(model=MODEL, messages=user("[[model-error]] hi"))
    assert failed.value.code == "model_unavailable"
    ended = await _turn_end(stack, failed.value.response.headers[HEADER], "oa-failed")
    assert ended["type"] == "turn.failed" and ended["error"]["code"] == "model_unavailable", ended


async def test_a_turn_failed_for_a_model_that_is_down_says_when_to_retry(stack: Stack) -> None:
    """Before: its 503 had no `Retry-After` (every other retryable refusal has one), so the
    SDK retried within a second or two, into the reasoner's circuit breaker, open for
    LLM_BREAKER_COOLDOWN_SECONDS: each retry was one more turn failed at once."""
    client = async_client(stack, "oa-model-down")
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(model=MODEL, messages=user("[[model-error]] hi"))
    assert (failed.value.status_code, failed.value.code) == (503, "model_unavailable")
    assert failed.value.response.headers["Retry-After"] == "30"  # docs/openai.md
    assert "x-should-retry" not in failed.value.response.headers  # waiting helps


async def _turn_end(stack: Stack, conversation: str, name: str) -> dict[str, Any]:
    """The end of the conversation's (only) turn, watched over the WebSocket."""
    async with connect(f"{stack.ws_url}?user={name}") as ws:
        await send(ws, {"type": "resume", "conversation_id": conversation})
        async with asyncio.timeout(30):
            while True:
                frame = await next_frame(ws)
                if frame["type"] in ("turn.completed", "turn.failed"):
                    return frame


def test_sse_body_ends_with_done(stack: Stack) -> None:
    import urllib.request

    request = urllib.request.Request(
        stack.http("gateway", "/v1/chat/completions"),
        data=json.dumps({"model": MODEL, "messages": user("what is 2+2?"), "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read().decode()
    events = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_a_body_that_cannot_be_decoded_is_a_400_not_an_internal_error(stack: Stack) -> None:
    """A `Content-Encoding` the body is not in: the client's mistake, said as one (it was a
    500 `internal`, logged as a gateway bug)."""
    log = stack.replicas("gateway")[0].log_path
    start = log.stat().st_size
    status, error = _post_raw(stack, json.dumps({"model": MODEL, "messages": user("hi")}).encode(), "gzip")
    assert status == 400, error
    assert error["code"] == "invalid_request" and "content-encoding" in error["message"].lower(), error
    sync_client(stack).models.list()  # the gateway has finished with the first connection
    with log.open() as lines:
        lines.seek(start)
        assert '"level": "error"' not in lines.read()


def _post_raw(stack: Stack, body: bytes, encoding: str) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        stack.http("gateway", "/v1/chat/completions"),
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]


def test_optional_parameters_sent_as_null_are_unset(stack: Stack) -> None:
    """OpenAI's optional parameters are nullable; clients send null for unset (`n=None` in
    the SDK). They were refused 400 ("n: Input should be a valid integer")."""
    client = sync_client(stack, "oa-nulls")  # a user of its own: "dev" meets its tool rate in a full run
    completion = client.chat.completions.create(
        model=MODEL, messages=user("what is 2+2?"), n=None, stream=None, temperature=None, max_tokens=None, stop=None
    )
    assert "4" in (completion.choices[0].message.content or "")
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=user("what is 2+2?"),
            stream=True,
            n=None,
            extra_body={"stream_options": {"include_usage": None}},  # the SDK's types want a bool
        )
    )
    assert "4" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.usage is None for c in chunks)
