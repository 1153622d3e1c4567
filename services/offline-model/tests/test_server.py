"""The real server on a free port, driven by the real `openai` SDK like the reasoner does."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from agentry_offline_model.rules import REASONING_SENTINEL
from agentry_offline_model.server import build_app
from agentry_shared.logs import JsonFormatter
from agentry_shared.settings import OfflineModelSettings
from agentry_shared.tracing import TURN_ID_HEADER
from aiohttp import web
from openai.types.chat import ChatCompletionFunctionToolParam
from prometheus_client import REGISTRY

CALCULATOR: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluates arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve(build_app(OfflineModelSettings(offline_model_chunk_delay_ms=0))) as url:
        yield url


@pytest_asyncio.fixture
async def client(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="anything", max_retries=0) as sdk:
        yield sdk


async def collect(client: openai.AsyncOpenAI, messages: list[Any], **kwargs: Any) -> dict[str, Any]:
    """Assembles a stream the way an agent does: content, reasoning, tool calls by index."""
    stream = await client.chat.completions.create(model="any-model-name", messages=messages, stream=True, **kwargs)
    content, reasoning, finish, usage = "", "", None, None
    calls: dict[int, dict[str, str]] = {}
    async for chunk in stream:
        assert chunk.model == "any-model-name"
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        delta = choice.delta
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += call.id or ""
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
    return {"content": content, "reasoning": reasoning, "finish": finish, "calls": calls, "usage": usage}


@pytest.mark.asyncio
async def test_streaming_text_reply(client: openai.AsyncOpenAI) -> None:
    result = await collect(client, [{"role": "user", "content": "hello offline model"}])
    assert result["finish"] == "stop"
    assert result["content"].startswith('You said: "hello offline model".')
    assert result["reasoning"].startswith(REASONING_SENTINEL)
    assert REASONING_SENTINEL not in result["content"]
    assert result["calls"] == {}


@pytest.mark.asyncio
async def test_streaming_tool_calls_assemble(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "what is 37*91 and (2+3)*4?"}]
    result = await collect(client, messages, tools=[CALCULATOR], stream_options={"include_usage": True})
    assert result["finish"] == "tool_calls"
    assert result["content"] == ""
    calls = [result["calls"][i] for i in sorted(result["calls"])]
    assert [c["name"] for c in calls] == ["calculator", "calculator"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"expression": "37*91"}, {"expression": "(2+3)*4"}]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)
    assert result["usage"] is not None and result["usage"].total_tokens > 0


@pytest.mark.asyncio
async def test_tool_result_round_trip(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "what is 37*91"}], tools=[CALCULATOR]
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    follow_up: list[Any] = [
        {"role": "user", "content": "what is 37*91"},
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "3367"},
    ]
    result = await collect(client, follow_up, tools=[CALCULATOR])
    assert result["content"] == "37*91 = 3367."


@pytest.mark.asyncio
async def test_non_streaming(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-whatever", messages=[{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]
    )
    assert completion.object == "chat.completion" and completion.model == "gpt-whatever"
    message = completion.choices[0].message
    assert message.role == "assistant" and message.content is not None
    assert message.content.startswith('You said: "hi there".')
    assert (message.model_extra or {})["reasoning_content"].startswith(REASONING_SENTINEL)
    assert completion.usage is not None and completion.usage.prompt_tokens == 2


@pytest.mark.asyncio
async def test_models(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert models == ["agentry-offline"]


@pytest.mark.asyncio
async def test_model_error_hook(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await collect(client, [{"role": "user", "content": "please fail [[model-error]]"}])


@pytest.mark.asyncio
async def test_invalid_bodies_are_400(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for body in ("not json", json.dumps({"model": "m"}), json.dumps([1]), json.dumps({"messages": "x"})):
            async with session.post(f"{base_url}/v1/chat/completions", data=body) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.asyncio
async def test_a_call_without_its_result_is_refused_as_real_servers_do(client: openai.AsyncOpenAI) -> None:
    """So the stack's tests meet what OpenAI's API (and most others) answer to a
    conversation holding a tool call with no tool message for it."""
    call = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
    unanswered: list[Any] = [
        {"role": "user", "content": "what is 1+1?"},
        {"role": "assistant", "content": None, "tool_calls": [call, {**call, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "2"},
        {"role": "user", "content": "hi"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        await collect(client, unanswered)
    assert "call_2" in str(refused.value) and "call_1" not in str(refused.value).split("messages:")[1]
    answered = [*unanswered[:3], {"role": "tool", "tool_call_id": "call_2", "content": "2"}, unanswered[3]]
    assert await collect(client, answered)


@pytest.mark.asyncio
async def test_sse_framing_and_ops(base_url: str) -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = await response.text()
        events = [e for e in text.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
        assert json.loads(events[0][6:])["choices"][0]["delta"] == {"role": "assistant"}
        for path in ("/healthz", "/readyz"):
            async with session.get(base_url + path) as response:
                assert response.status == 200
        async with session.get(f"{base_url}/metrics") as response:
            assert 'agentry_offline_model_requests_total{outcome="ok",stream="true"}' in await response.text()


@pytest.mark.asyncio
async def test_model_slow_hook_delays_the_first_chunk(client: openai.AsyncOpenAI) -> None:
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "wait [[model-slow:0.3]]"}], stream=True
    )
    chunks = stream.__aiter__()
    await chunks.__anext__()  # the first chunk, not the whole answer, is what waits
    assert time.perf_counter() - started >= 0.3
    finishes = [c.choices[0].finish_reason async for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def requests_total(stream: str, outcome: str) -> float:
    labels = {"stream": stream, "outcome": outcome}
    return REGISTRY.get_sample_value("agentry_offline_model_requests_total", labels) or 0.0


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_count_streams_word_by_word(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "count to 50"}], stream=True
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert [p.strip() for p in pieces] == [str(n) for n in range(1, 51)]


@pytest.mark.asyncio
async def test_client_leaving_mid_count_is_client_gone() -> None:
    before = requests_total("true", "client_gone")
    app = build_app(OfflineModelSettings(offline_model_chunk_delay_ms=5))
    async with serve(app) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "count to 500"}], stream=True
        )
        seen = 0
        async for chunk in stream:
            seen += bool(chunk.choices and chunk.choices[0].delta.content)
            if seen == 10:
                break
        await stream.close()
        await until(lambda: requests_total("true", "client_gone") > before)


@pytest.mark.asyncio
async def test_model_hang_sends_reasoning_then_waits_for_the_client_to_leave(client: openai.AsyncOpenAI) -> None:
    before = requests_total("true", "client_gone")
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello [[model-hang]]"}], stream=True
    )
    reasoning = ""
    iterator = stream.__aiter__()
    for _ in range(4):  # the role chunk, then three reasoning chunks
        chunk = await asyncio.wait_for(iterator.__anext__(), 5)
        reasoning += (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
    assert reasoning.startswith(REASONING_SENTINEL)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(iterator.__anext__(), 0.3)  # nothing more: the model hangs
    await stream.close()
    await until(lambda: requests_total("true", "client_gone") > before)


@pytest.mark.asyncio
async def test_model_hang_gives_up_after_its_bound() -> None:
    app = build_app(OfflineModelSettings(offline_model_chunk_delay_ms=0), hang_limit_s=0.2)
    async with serve(app) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.APIError, match="model-hang"):
            await collect(sdk, [{"role": "user", "content": "[[model-hang]]"}])
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[model-hang]]"}])
    assert requests_total("true", "hang_timeout") >= 1 and requests_total("false", "hang_timeout") >= 1


@pytest.mark.asyncio
async def test_python_round_trip(client: openai.AsyncOpenAI) -> None:
    python_tool: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "python", "parameters": {"type": "object", "properties": {"code": {"type": "string"}}}},
    }
    ask = {"role": "user", "content": "run this\n```python\nprint(6*7)\n```"}
    first = await collect(client, [ask], tools=[python_tool, CALCULATOR])
    call = first["calls"][0]
    assert call["name"] == "python" and json.loads(call["arguments"]) == {"code": "print(6*7)"}
    function = {"name": "python", "arguments": call["arguments"]}
    assistant = {"role": "assistant", "tool_calls": [{"id": call["id"], "type": "function", "function": function}]}
    result = {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"stdout": "42\n", "exit_code": 0})}
    second = await collect(client, [ask, assistant, result], tools=[python_tool])
    assert second["content"] == "The program exited with 0 and printed: 42"


async def test_the_request_line_names_the_callers_trace_and_turn(client: openai.AsyncOpenAI) -> None:
    """The per-request log line carries the trace id of the caller's `traceparent` and the
    turn of its `X-Agentry-Turn-Id` (the reasoner sends both), so one filter on a turn's
    `turn_id` finds the model's side too; a caller that sends neither gets a line without."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traced = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", TURN_ID_HEADER: "turn-42"}
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("offline-model"))
    logger = logging.getLogger("agentry_offline_model")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        hi: Any = [{"role": "user", "content": "hi"}]
        await collect(client, hi, extra_headers=traced)
        await client.chat.completions.create(model="m", messages=hi, extra_headers=traced)
        await collect(client, hi)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    requests = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(r["msg"], r["stream"], r.get("trace_id"), r.get("turn_id")) for r in requests] == [
        ("chat completion", True, trace_id, "turn-42"),
        ("chat completion", False, trace_id, "turn-42"),
        ("chat completion", True, None, None),
    ]
