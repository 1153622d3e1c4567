"""Recorded SSE transcripts of each server's dialect, replayed by a real HTTP server to
the real `openai` SDK, through the reasoner's model adapter and agent loop.

The transcripts follow each server's documented wire format (docs/models.md says which):
the tests prove the client sees no thinking, calls come out whole, and a provider's
failure is a model error or a retry, never `internal`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio
from agentry_reasoner.agent import Budget, Turn
from agentry_reasoner.breaker import CircuitBreaker
from agentry_reasoner.model import GuardedModel, ModelOptions, OpenAIModel
from agentry_reasoner.model.items import ReasoningDelta, TextDelta
from agentry_reasoner.model.openai_chat import model_client
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import ServerFrame, TurnCompleted
from agentry_shared.contracts.memory import Context, TurnBegun
from agentry_shared.contracts.tools import ToolCompleted, ToolDescriptor
from agentry_shared.logs import bind_context
from agentry_shared.settings import ReasonerSettings
from agentry_shared.tracing import processing
from aiohttp import web

SECRET = "SECRET-PLAN"
CALC = ToolDescriptor(
    name="calculator",
    description="math",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)

Reply = tuple[int, str, bytes]  # status, content type, body


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
        **extra,
    }


def sse(*events: dict[str, Any] | str, done: bool = True) -> Reply:
    lines = [e if isinstance(e, str) else f"data: {json.dumps(e)}\n\n" for e in events]
    return 200, "text/event-stream", ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def call_delta(index: int | None, call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    piece: dict[str, Any] = {"type": "function", "function": {"arguments": arguments}}
    if index is not None:
        piece["index"] = index
    if call_id:
        piece["id"] = call_id
    if name:
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


ROLE = chunk({"role": "assistant", "content": ""})
ANSWER = sse(ROLE, chunk({"content": "It is "}), chunk({"content": "3367."}), chunk({}, "stop"))

# vLLM (reasoning parser on, before 0.11) and DeepSeek: `reasoning_content`; calls in pieces.
VLLM_CALL = sse(
    ROLE,
    chunk({"reasoning_content": f"{SECRET} the user "}),
    chunk({"reasoning_content": "wants a product."}),
    chunk(call_delta(0, "chatcmpl-tool-1", "calculator", "")),
    chunk(call_delta(0, None, None, '{"expression": ')),
    chunk(call_delta(0, None, None, '"37*91"}')),
    chunk({}, "tool_calls"),
)
# Ollama: `reasoning`, each call whole in one delta, parallel calls all at index 0, and
# finish_reason "stop" although calls were made.
OLLAMA_CALL = sse(
    chunk({"role": "assistant", "content": "", "reasoning": f"{SECRET} two products."}),
    chunk(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_x1",
                    "index": 0,
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"37*91"}'},
                },
                {
                    "id": "call_x2",
                    "index": 0,
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"2*3"}'},
                },
            ],
        }
    ),
    chunk({"role": "assistant", "content": ""}, "stop"),
)
# OpenRouter: keep-alive comments, `reasoning` with `reasoning_details` beside it.
OPENROUTER_CALL = sse(
    ": OPENROUTER PROCESSING\n\n",
    chunk(
        {
            "role": "assistant",
            "content": "",
            "reasoning": SECRET,
            "reasoning_details": [{"type": "reasoning.text", "text": SECRET}],
        }
    ),
    ": OPENROUTER PROCESSING\n\n",
    chunk(call_delta(0, "tool_0", "calculator", '{"expression"')),
    chunk(call_delta(0, None, None, ':"37*91"}')),
    chunk({}, "tool_calls"),
)
# llama.cpp without a reasoning parser (reasoning_format none) on a Qwen3: inline tags,
# cut mid-tag; the call has no id and no index (other servers' habits, mixed in).
INLINE_CALL = sse(
    ROLE,
    chunk({"content": "<thi"}),
    chunk({"content": f"nk>{SECRET} I should"}),
    chunk({"content": " use the calculator.</th"}),
    chunk({"content": "ink>\n\n"}),
    chunk(call_delta(None, None, "calculator", '{"expression": "37*91"}')),
    chunk({}, "tool_calls"),
)
INLINE_ANSWER = sse(
    ROLE, chunk({"content": f"<think>{SECRET}</think>"}), chunk({"content": "It is 3367."}), chunk({}, "stop")
)
# gpt-oss through a server that passes harmony's markers through in `content`.
HARMONY_ANSWER = sse(
    ROLE,
    chunk({"content": f"<|channel|>analysis<|message|>{SECRET}<|e"}),
    chunk({"content": "nd|><|start|>assistant<|channel|>final<|message|>It is "}),
    chunk({"content": "3367.<|return|>"}),
    chunk({}, "stop"),
)
# llama.cpp's error event in the middle of a tool call (seen with Qwen2.5 and tools).
LLAMACPP_ERROR = sse(
    ROLE,
    chunk({"reasoning_content": SECRET}),
    chunk(call_delta(0, "abc", "calculator", '{"expr')),
    {"error": {"code": 500, "message": "Invalid diff: now finding less tool calls!", "type": "server_error"}},
    done=False,
)
VLLM_ERROR_OBJECT = sse(
    {"object": "error", "message": "engine died", "type": "InternalServerError", "code": 500}, done=False
)
CUT_AFTER_TEXT = sse(ROLE, chunk({"content": "It is 33"}), done=False)
NO_CHOICES = sse({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []})
ERROR_BODY: Reply = (
    200,
    "application/json",
    json.dumps({"error": {"message": "model is loading", "code": 503}}).encode(),
)
CONTEXT_400: Reply = (
    400,
    "application/json",
    json.dumps(
        {
            "error": {
                "message": "This model's maximum context length is 4096 tokens.",
                "type": "BadRequestError",
                "code": 400,
            }
        }
    ).encode(),
)
STRAY_BRACE_CALL = sse(
    ROLE,
    chunk({"content": "{"}),
    chunk(call_delta(0, None, "calculator", '{"expression": 37*91')),
    chunk({}, "tool_calls"),
)


class Replay:
    """Answers each request with the next reply; keeps the request bodies and headers."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        status, kind, body = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return web.Response(status=status, body=body, content_type=kind)


@pytest_asyncio.fixture
async def replay() -> AsyncIterator[tuple[Replay, str]]:
    server = Replay()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield server, f"http://{host}:{port}/v1"
    await runner.cleanup()


class Ports:
    def __init__(self, history: list[ChatMessage]) -> None:
        self.frames: list[ServerFrame] = []
        self.history = history
        self.reasoning: dict[int, str] = {}
        self.results: list[ToolCompleted] = []

    async def emit(self, frame: ServerFrame, *, hold: bool = False) -> None:
        self.frames.append(frame)

    async def complete(self, frame: TurnCompleted, messages: list[ChatMessage], reasoning: Mapping[int, str]) -> None:
        await self.append(messages, reasoning)
        await self.emit(frame)

    async def context(self) -> Context:
        return Context(messages=list(self.history))

    async def append(self, messages: list[ChatMessage], reasoning: Mapping[int, str] | None = None) -> None:
        self.reasoning.update(reasoning or {})

    async def record_reasoning(self, step: int, text: str) -> None:
        self.reasoning[step] = text

    async def catalog(self) -> list[ToolDescriptor]:
        return [CALC]

    async def take_token(self, tool: ToolDescriptor) -> float:
        return 0.0

    async def call(self, tool: ToolDescriptor, call_id: str, arguments: dict[str, Any]) -> ToolCompleted:
        result = ToolCompleted(call_id=call_id, tool=tool.name, ok=True, output="3367")
        self.results.append(result)
        return result

    async def decision(self, call_id: str, arguments: dict[str, Any]) -> bool | None:
        return True

    async def ask(self, tool: str, call_id: str, arguments: dict[str, Any], timeout_s: float) -> bool:
        return True


async def run_turn(
    base_url: str,
    *replies: Reply,
    history: list[ChatMessage] | None = None,
    model: str = "m",
    turn_id: str = "t",
    **options: Any,
) -> tuple[Ports, Any]:
    client = model_client(base_url, "k", timeout=30.0, max_retries=0)  # as the service makes it
    adapter = OpenAIModel(client, model, ModelOptions(**options))
    try:
        return await run_turn_with(adapter, history=history, turn_id=turn_id)
    finally:
        await client.close()


async def run_turn_with(
    adapter: OpenAIModel, *, history: list[ChatMessage] | None = None, turn_id: str = "t"
) -> tuple[Ports, Any]:
    """One turn through `adapter`: the service keeps one per model for all its turns."""
    guarded = GuardedModel([(adapter, CircuitBreaker(5, 30))], retries=2, sleep=lambda _: _no_wait())
    ports = Ports(history or [ChatMessage(role="user", content="what is 37*91?")])
    turn = Turn(
        conversation_id="c",
        turn_id=turn_id,
        system_prompt="s",
        model=guarded,
        memory=ports,
        tools=ports,
        events=ports,
        budget=Budget(delta_interval_s=0.0),
        approvals=ports,
    )
    outcome = await turn.run(TurnBegun(attempt=1, state="running"))
    return ports, outcome


async def _no_wait() -> None:
    return None


def client_text(ports: Ports) -> str:
    return "".join(f.model_dump_json() for f in ports.frames)


def answer_deltas(ports: Ports) -> str:
    """The deltas after the last reset: what the client shows as the answer."""
    text = ""
    for frame in ports.frames:
        if frame.type == "message.reset":
            text = ""
        elif frame.type == "message.delta":
            text += frame.text
    return text


@pytest.mark.parametrize(
    ("name", "first", "then"),
    [
        ("vllm", VLLM_CALL, ANSWER),
        ("ollama", OLLAMA_CALL, ANSWER),
        ("openrouter", OPENROUTER_CALL, ANSWER),
        ("inline-think", INLINE_CALL, INLINE_ANSWER),
        ("harmony", VLLM_CALL, HARMONY_ANSWER),
    ],
)
@pytest.mark.parametrize("starts_open", [False, None], ids=["told-it-does-not", "not-known-yet"])
async def test_each_dialect_calls_the_tool_and_keeps_thinking_private(
    replay: tuple[Replay, str], name: str, first: Reply, then: Reply, starts_open: bool | None
) -> None:
    server, url = replay
    server.replies = [first, then]
    ports, outcome = await run_turn(url, starts_open=starts_open, learns_starts_open=starts_open is None)
    assert outcome.ok and "3367" in outcome.text, (name, ports.frames)
    assert answer_deltas(ports) == outcome.text
    assert SECRET not in client_text(ports)
    assert any(SECRET in text for text in ports.reasoning.values())
    assert ports.results and all(r.call_id for r in ports.results)
    assert "thinking.started" in client_text(ports)


async def test_parallel_calls_at_index_zero_both_run(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [OLLAMA_CALL, ANSWER]
    ports, _ = await run_turn(url)
    assert [r.call_id for r in ports.results] == ["call_x1", "call_x2"]


# Two calls without ids in one step, told apart by their index only.
TWO_CALLS_WITHOUT_IDS = sse(
    ROLE,
    chunk(call_delta(0, None, "calculator", '{"expression": "1"}')),
    chunk(call_delta(1, None, "calculator", '{"expression": "2"}')),
    chunk({}, "tool_calls"),
)


async def test_a_call_without_id_is_named_by_turn_step_and_index(replay: tuple[Replay, str]) -> None:
    """A resumed turn must name the call the same (the tool-runners keep results by id),
    and no two calls of a turn, or of two turns, may share a name."""
    server, url = replay
    server.replies = [INLINE_CALL, TWO_CALLS_WITHOUT_IDS, ANSWER]
    ports, _ = await run_turn(url)
    ids = [r.call_id for r in ports.results]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 3, ids  # step 0; step 1, index 0 and 1
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == ids[0]
    server.replies = [INLINE_CALL, TWO_CALLS_WITHOUT_IDS, ANSWER]
    resumed, _ = await run_turn(url)
    assert [r.call_id for r in resumed.results] == ids
    server.replies = [INLINE_CALL, ANSWER]
    other, _ = await run_turn(url, turn_id="t2")
    assert other.results[0].call_id not in ids


async def test_llamacpp_error_event_mid_stream_is_retried_not_internal(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [LLAMACPP_ERROR, VLLM_CALL, ANSWER]
    _ports, outcome = await run_turn(url)
    assert outcome.ok and "3367" in outcome.text
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("failure", "requests"),
    # Nothing streamed yet: the first try and two retries (LLM_MAX_RETRIES). Thinking
    # already streamed (llama.cpp): one restart of the step.
    [(VLLM_ERROR_OBJECT, 3), (NO_CHOICES, 3), (ERROR_BODY, 3), (LLAMACPP_ERROR, 2)],
    ids=["vllm-error-object", "no-choices", "error-body", "llamacpp-error-event"],
)
async def test_provider_failures_that_persist_end_as_model_errors(
    replay: tuple[Replay, str], failure: Reply, requests: int
) -> None:
    server, url = replay
    server.replies = [failure]
    _ports, outcome = await run_turn(url)
    assert not outcome.ok and outcome.code == "model_unavailable"
    assert len(server.requests) == requests


async def test_a_stream_cut_after_text_resets_the_answer_and_restarts_the_step(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [CUT_AFTER_TEXT, ANSWER]
    ports, outcome = await run_turn(url)
    assert outcome.ok and outcome.text == "It is 3367."
    assert any(f.type == "message.reset" and f.reason == "retry" for f in ports.frames)
    assert answer_deltas(ports) == "It is 3367."


async def test_a_stream_cut_twice_after_text_fails_with_a_model_code(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [CUT_AFTER_TEXT]
    _ports, outcome = await run_turn(url)
    assert not outcome.ok and outcome.code == "model_unavailable"


async def test_stray_brace_never_reaches_the_client_and_bad_json_goes_back_to_the_model(
    replay: tuple[Replay, str],
) -> None:
    server, url = replay
    server.replies = [STRAY_BRACE_CALL, ANSWER]
    ports, outcome = await run_turn(url)
    assert outcome.ok
    assert not any(f.type == "message.delta" and "{" in f.text for f in ports.frames)
    assert "not valid JSON" in server.requests[1]["messages"][-1]["content"]


async def test_context_too_long_trims_the_window_once(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [CONTEXT_400, ANSWER]
    history = [ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(9)]
    _ports, outcome = await run_turn(url, history=history)
    assert outcome.ok
    assert len(server.requests[1]["messages"]) < len(server.requests[0]["messages"])
    assert server.requests[1]["messages"][-1]["content"] == "m8"
    server.replies, server.requests = [CONTEXT_400], []  # still too long once trimmed: no second trim
    _ports, outcome = await run_turn(url, history=history)
    assert not outcome.ok and outcome.code == "context_too_long"
    assert len(server.requests) == 2


async def test_context_too_long_with_nothing_to_trim_fails_with_its_code(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [CONTEXT_400]
    _ports, outcome = await run_turn(url)
    assert not outcome.ok and outcome.code == "context_too_long"


async def test_reasoning_models_get_max_completion_tokens_and_effort(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [ANSWER]
    await run_turn(url, max_output_tokens=512, max_tokens_field="max_completion_tokens", reasoning_effort="low")
    body = server.requests[0]
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body and body["reasoning_effort"] == "low"


async def test_max_tokens_refused_switches_to_max_completion_tokens(replay: tuple[Replay, str]) -> None:
    server, url = replay
    refusal = {
        "error": {
            "message": (
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead."
            ),
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }
    server.replies = [(400, "application/json", json.dumps(refusal).encode()), ANSWER]
    _ports, outcome = await run_turn(url, max_output_tokens=512)
    assert outcome.ok and server.requests[1]["max_completion_tokens"] == 512


async def test_thinking_indicator_runs_until_the_first_token_without_reasoning_text(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [ANSWER]
    ports, _ = await run_turn(url)
    kinds = [f.type for f in ports.frames]
    assert kinds.index("thinking.started") < kinds.index("thinking.finished") < kinds.index("message.delta")
    assert ports.reasoning == {}  # nothing to audit: the provider showed no reasoning


# OpenAI's reasoning models: no reasoning text, only its token count in the usage chunk
# that `stream_options.include_usage` asks for (a chunk with no choices, after the finish).
OPENAI_REASONING_ANSWER = sse(
    ROLE,
    chunk({"content": "It is "}),
    chunk({"content": "3367."}),
    chunk({}, "stop"),
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "o4-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 140,
            "total_tokens": 152,
            "completion_tokens_details": {"reasoning_tokens": 128},
        },
    },
)


async def test_usage_is_asked_for_and_hidden_reasoning_is_audited_not_shown(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [OPENAI_REASONING_ANSWER]
    ports, outcome = await run_turn(url)
    assert outcome.ok and outcome.text == "It is 3367."
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert ports.reasoning == {0: "[reasoning hidden by the provider: 128 tokens]"}
    assert "128" not in client_text(ports) and "hidden" not in client_text(ports)
    assert answer_deltas(ports) == "It is 3367."


async def test_reasoning_tokens_beside_reasoning_text_leave_the_text_as_the_record(replay: tuple[Replay, str]) -> None:
    server, url = replay
    usage = {"completion_tokens_details": {"reasoning_tokens": 7}, "prompt_tokens": 1, "completion_tokens": 9}
    with_text = sse(
        ROLE,
        chunk({"reasoning": SECRET}),
        chunk({"content": "It is 3367."}),
        chunk({}, "stop"),
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": usage},
    )
    server.replies = [with_text]
    ports, _ = await run_turn(url)
    assert ports.reasoning == {0: SECRET}


async def test_a_request_of_a_turn_carries_its_trace_and_turn_id_and_nothing_else_of_ours(
    replay: tuple[Replay, str],
) -> None:
    """The model server can log the turn (`X-Agentry-Turn-Id`, what our offline model
    reads) beside the trace id (`traceparent`); no other id of the user goes out."""
    server, url = replay
    server.replies = [ANSWER]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with (
        processing({"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}, "turns", "0"),
        bind_context(turn_id="turn-42", conversation_id="c-7"),
    ):
        await run_turn(url)
    await run_turn(url)  # outside a turn: neither
    sent, outside = ({k.lower(): v for k, v in h.items()} for h in server.headers)
    assert sent["x-agentry-turn-id"] == "turn-42" and sent["traceparent"].split("-")[1] == trace_id
    assert not any("c-7" in value for value in sent.values())
    assert "x-agentry-turn-id" not in outside and "traceparent" not in outside


async def test_usage_is_not_asked_for_when_turned_off(replay: tuple[Replay, str]) -> None:
    server, url = replay
    server.replies = [ANSWER]
    await run_turn(url, stream_usage=False)
    assert "stream_options" not in server.requests[0]


async def test_a_server_that_refuses_stream_options_is_asked_without_them(replay: tuple[Replay, str]) -> None:
    server, url = replay
    refusal = {"error": {"message": "Unrecognized request argument supplied: stream_options", "code": 400}}
    server.replies = [(400, "application/json", json.dumps(refusal).encode()), ANSWER]
    _ports, outcome = await run_turn(url)
    assert outcome.ok
    assert "stream_options" in server.requests[0] and "stream_options" not in server.requests[1]


# DeepSeek-R1 behind a server without a reasoning parser: the template opened `<think>`,
# and the reply reached the output cap (`finish_reason` "length") before `</think>`.
STARTS_OPEN_CUT_BY_THE_CAP = sse(
    ROLE,
    chunk({"content": f"{SECRET} the user wants"}),
    chunk({"content": " a product, so I"}),
    chunk({}, "length"),
)


async def test_thinking_cut_by_the_output_cap_stays_private(replay: tuple[Replay, str]) -> None:
    """Unclosed implied thinking is the answer only when the model ended it itself; cut
    by the cap, it is thinking that never got to the answer."""
    server, url = replay
    server.replies = [STARTS_OPEN_CUT_BY_THE_CAP]
    ports, outcome = await run_turn(url, starts_open=True)
    assert SECRET not in client_text(ports) and SECRET not in outcome.text
    assert SECRET in ports.reasoning[0]
    # No answer at all: a clear failure that names the likely cause, not an empty answer
    # (it was one: an empty bubble, and an empty assistant message in every later context).
    assert not outcome.ok and outcome.code == "model_error"
    failed = [f for f in ports.frames if f.type == "turn.failed"]
    assert failed and "LLM_MAX_OUTPUT_TOKENS" in failed[0].error.message
    assert not any(f.type == "turn.completed" for f in ports.frames)


# Provider errors that quote the model's output: llama.cpp's parser failing on what the
# model wrote ("Failed to parse input at pos N: …", thinking included), as an event
# mid-stream, as vLLM's error object, as a 200 error body, as a 400.
QUOTED = f"Failed to parse input at pos 0: <think>{SECRET} the user wants</think><tool_call>{{"
QUOTING_FAILURES = {
    "llamacpp-event": sse(ROLE, {"error": {"code": 500, "message": QUOTED, "type": "server_error"}}, done=False),
    "vllm-error-object": sse({"object": "error", "message": QUOTED, "code": 500}, done=False),
    "error-body": (200, "application/json", json.dumps({"error": {"message": QUOTED, "code": 500}}).encode()),
    "status-400": (400, "application/json", json.dumps({"error": {"message": QUOTED, "code": 400}}).encode()),
}


@pytest.mark.parametrize("failure", sorted(QUOTING_FAILURES))
async def test_a_provider_error_quoting_the_output_is_not_shown(replay: tuple[Replay, str], failure: str) -> None:
    server, url = replay
    server.replies = [QUOTING_FAILURES[failure]]
    ports, outcome = await run_turn(url)
    assert not outcome.ok and outcome.code in ("model_unavailable", "model_error")
    assert any(f.type == "turn.failed" for f in ports.frames)
    assert SECRET not in client_text(ports)


# A server without a reasoning parser, for a model whose chat template opens `<think>`:
# the reply starts inside the thinking and only its closing tag shows it.
STRAY_CLOSE = sse(
    ROLE,
    chunk({"content": f"{SECRET} the user greets"}),
    chunk({"content": " me.</think>Hello!"}),
    chunk({}, "stop"),
)


@pytest.mark.parametrize("setting", ["auto", "false"])
async def test_a_model_that_closes_a_thinking_it_never_opened_starts_inside_it_next_time(
    replay: tuple[Replay, str], setting: str
) -> None:
    """The first such reply was streamed before its `</think>` came (it is taken back with
    `message.reset`); with `LLM_THINK_STARTS_OPEN=auto` the adapter, one per model for
    every turn, then reads this model's replies as starting inside the thinking."""
    server, url = replay
    server.replies = [STRAY_CLOSE, STRAY_CLOSE]
    client = model_client(url, "k", timeout=30.0, max_retries=0)
    adapter = OpenAIModel(client, "m", ModelOptions(learns_starts_open=setting == "auto"))
    try:
        first, first_outcome = await run_turn_with(adapter, turn_id="t1")
        second, second_outcome = await run_turn_with(adapter, turn_id="t2")
    finally:
        await client.close()
    assert first_outcome.text == second_outcome.text == "Hello!"
    assert SECRET in client_text(first) and any(f.type == "message.reset" for f in first.frames)
    assert SECRET in second.reasoning[0] and answer_deltas(second) == "Hello!"
    if setting == "auto":
        assert SECRET not in client_text(second)
        assert not any(f.type == "message.reset" for f in second.frames)
    else:  # told it does not: every reply is read as it comes, and taken back
        assert SECRET in client_text(second)


def auto_options(model: str) -> ModelOptions:
    """What the service builds for `model` with the default `LLM_THINK_STARTS_OPEN=auto`."""
    return ModelOptions.for_model(ReasonerSettings(agentry_namespace="t"), model)


async def test_a_model_not_known_yet_shows_no_thinking_even_in_its_first_reply(replay: tuple[Replay, str]) -> None:
    """Before: a model whose name did not say its template opens `<think>` streamed its
    first reply's thinking to the client until the `</think>` came, then took it back.
    Now a model not known yet is read as starting inside the thinking until a reply
    shows which it is."""
    assert auto_options("my-served-model").starts_open is None
    server, url = replay
    server.replies = [STRAY_CLOSE, STRAY_CLOSE]
    client = model_client(url, "k", timeout=30.0, max_retries=0)
    adapter = OpenAIModel(client, "my-served-model", auto_options("my-served-model"))
    try:
        for turn_id in ("t1", "t2"):
            ports, outcome = await run_turn_with(adapter, turn_id=turn_id)
            assert outcome.text == answer_deltas(ports) == "Hello!"
            assert SECRET not in client_text(ports)
            assert not any(f.type == "message.reset" for f in ports.frames)
            assert SECRET in ports.reasoning[0]
    finally:
        await client.close()


async def pieces(adapter: OpenAIModel) -> tuple[list[str], str]:
    """One model call: its answer text as the adapter hands it on piece by piece, and
    its thinking (what the audit records)."""
    items = [item async for item in adapter.stream([{"role": "user", "content": "hi"}], [])]
    thinking = "".join(item.text for item in items if isinstance(item, ReasoningDelta))
    return [item.text for item in items if isinstance(item, TextDelta)], thinking


async def text_pieces(adapter: OpenAIModel) -> list[str]:
    return (await pieces(adapter))[0]


OWN_THINK_ANSWER = sse(
    ROLE,
    chunk({"content": f"<think>{SECRET}</think>"}),
    chunk({"content": "It is "}),
    chunk({"content": "3367."}),
    chunk({}, "stop"),
)


@pytest.mark.parametrize(
    ("reply", "first"),
    [
        (ANSWER, ["It is 3367."]),  # no marker: held whole until the reply ends
        (OWN_THINK_ANSWER, ["It is ", "3367."]),  # its own `<think>`: the answer streams at once
        (HARMONY_ANSWER, ["It is ", "3367."]),
    ],
    ids=["plain", "own-think", "harmony"],
)
async def test_a_model_not_known_yet_streams_once_a_reply_shows_it_marks_its_own_thinking(
    replay: tuple[Replay, str], reply: Reply, first: list[str]
) -> None:
    """The price of holding: a model that writes no thinking markers at all has its first
    reply (per process) come whole at its end; every later reply streams as it comes."""
    server, url = replay
    server.replies = [reply, reply]
    client = model_client(url, "k", timeout=30.0, max_retries=0)
    adapter = OpenAIModel(client, "plain-model", auto_options("plain-model"))
    try:
        text, thinking = await pieces(adapter)
        assert text == first and "3367" not in thinking  # the answer is not audited as thinking
        assert await text_pieces(adapter) == ["It is ", "3367."]
    finally:
        await client.close()


async def test_a_model_known_to_open_its_thinking_stays_so_after_a_reply_without_it(
    replay: tuple[Replay, str],
) -> None:
    """One reply without `</think>` does not make a model that showed it once stream
    unread again: reading it wrongly that way would show its next thinking."""
    server, url = replay
    server.replies = [STRAY_CLOSE, ANSWER, STRAY_CLOSE]
    client = model_client(url, "k", timeout=30.0, max_retries=0)
    adapter = OpenAIModel(client, "my-served-model", auto_options("my-served-model"))
    try:
        assert await text_pieces(adapter) == ["Hello!"]
        assert await text_pieces(adapter) == ["It is 3367."]
        assert await text_pieces(adapter) == ["Hello!"]
    finally:
        await client.close()
