"""The OpenAI-compatible HTTP surface: /v1/chat/completions and /v1/models, plus ops.

Any OpenAI client (the official SDK included) must be able to talk to this exactly as
it talks to vLLM or a hosted provider, so errors use OpenAI's error body and streams
use its SSE framing, ending with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from agentry_shared.logs import bind_context
from agentry_shared.ops import build_ops_app
from agentry_shared.settings import OfflineModelSettings
from agentry_shared.tracing import TURN_ID_HEADER, serving_http
from aiohttp import web
from aiohttp.typedefs import Handler

from agentry_offline_model.conversation import role_of
from agentry_offline_model.dialects import Dialect, Event, dialect_chunks, dialect_completion, dialect_of, faults_of
from agentry_offline_model.hang import GAVE_UP, MAX_HANG_S, hang_until_client_leaves
from agentry_offline_model.metrics import DURATION, IN_PROGRESS, REQUESTS
from agentry_offline_model.rules import Reply, reply_to
from agentry_offline_model.streaming import Envelope, estimate_usage, head_chunks

log = logging.getLogger(__name__)

MODEL_ID = "agentry-offline"
REASONING_DELAY_S = 0.2
UNSUPPORTED_MAX_TOKENS = (
    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
)
MAX_BODY_BYTES = 16 * 1024 * 1024
FAULT_MEMORY = 4096  # requests whose injected fault already fired, remembered (least recent forgotten)


class RequestError(Exception):
    """A request we refuse, carried to the handler's single error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def build_app(settings: OfflineModelSettings, *, hang_limit_s: float = MAX_HANG_S) -> web.Application:
    """The ops app (/healthz, /readyz, /metrics) with the OpenAI routes added to it.

    `hang_limit_s` bounds the `[[model-hang]]` hook; tests lower it to see the give-up path.
    """
    app = build_ops_app(lambda: (True, "rules loaded"))
    chunk_delay_s = settings.offline_model_chunk_delay_ms / 1000

    failed_once = FiredFaults(FAULT_MEMORY)

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await _chat_completions(
            request, chunk_delay_s, hang_limit_s, settings.offline_model_dialect, failed_once
        )

    app.middlewares.append(traced)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    return app


@web.middleware
async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The model's requests continue the caller's trace (`traceparent` header) and name
    the caller's turn (`X-Agentry-Turn-Id`, cut to 128 characters) on their log lines;
    ops routes (/metrics, /healthz) are not traced."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    turn_id = request.headers.get(TURN_ID_HEADER)
    with (
        serving_http(request.headers, request.method, request.path) as span,
        bind_context(turn_id=turn_id[:128] if turn_id else None),
    ):
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


async def list_models(_: web.Request) -> web.Response:
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "agentry"}
    return web.json_response({"object": "list", "data": [model]})


def error_response(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": None}}, status=status)


async def _chat_completions(
    request: web.Request, chunk_delay_s: float, hang_limit_s: float, default: Dialect, failed_once: FiredFaults
) -> web.StreamResponse:
    started = time.perf_counter()
    stream, outcome, status, model = False, "ok", 200, MODEL_ID
    reply: Reply | None = None
    IN_PROGRESS.inc()
    try:
        body = await _read_body(request)
        messages, tools = body["messages"], body.get("tools") or []
        stream = body.get("stream") is True
        model = body["model"] if isinstance(body.get("model"), str) and body["model"] else MODEL_ID
        reply = reply_to(messages, tools)
        dialect = dialect_of(model, messages, default)
        if dialect == "openai-reasoning" and body.get("max_tokens") is not None:
            raise RequestError(400, UNSUPPORTED_MAX_TOKENS)
        faults = _once(faults_of(messages), json.dumps(messages, sort_keys=True, default=str), failed_once)
        if reply.fail_status is not None:
            outcome, status = "simulated_error", reply.fail_status
            return error_response(status, "offline model: simulated failure ([[model-error]])", "server_error")
        envelope = Envelope(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model)
        usage = estimate_usage(messages, reply)
        if not stream:
            await asyncio.sleep(reply.delay_s)
            if reply.hang:
                gone = await hang_until_client_leaves(request, hang_limit_s)
                outcome, status = ("client_gone" if gone else "hang_timeout"), 500
                return error_response(status, GAVE_UP, "server_error")
            return web.json_response(dialect_completion(dialect, reply, envelope, usage))
        options = body.get("stream_options")
        wants_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        pacing = (chunk_delay_s, hang_limit_s)
        if dialect == "openai-reasoning":
            reply = replace(reply, delay_s=max(reply.delay_s, REASONING_DELAY_S))  # it thinks out of sight
        events = dialect_chunks(dialect, reply, envelope, usage if wants_usage else None, faults)
        response, outcome = await _stream(request, reply, envelope, events, pacing)
        return response
    except RequestError as exc:
        outcome, status = "bad_request", exc.status
        return error_response(status, str(exc), "invalid_request_error")
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        IN_PROGRESS.dec()
        elapsed = time.perf_counter() - started
        label = "true" if stream else "false"
        REQUESTS.labels(stream=label, outcome=outcome).inc()
        DURATION.labels(stream=label).observe(elapsed)
        log.info("chat completion", extra=_log_fields(model, stream, outcome, status, elapsed, reply))


async def _read_body(request: web.Request) -> dict[str, Any]:
    """The JSON body, read with our own size cap (long contexts outgrow aiohttp's 1 MiB)."""
    raw = bytearray()
    async for block in request.content.iter_chunked(64 * 1024):
        raw += block
        if len(raw) > MAX_BODY_BYTES:
            raise RequestError(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    if not isinstance(body.get("messages"), list):
        raise RequestError(400, "'messages' is required and must be a list of chat messages")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise RequestError(400, "'tools' must be a list of tool definitions")
    unanswered = unanswered_tool_calls(body["messages"])
    if unanswered:
        raise RequestError(400, UNANSWERED_CALLS + ", ".join(unanswered))
    return body


# OpenAI's wording; most servers refuse such a conversation the same way.
UNANSWERED_CALLS = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
    "'tool_call_id'. The following tool_call_ids did not have response messages: "
)


def unanswered_tool_calls(messages: list[Any]) -> list[str]:
    """The ids of calls that the tool messages right after their assistant message do not
    answer, as model APIs check them (a client that sends these has a bug to see)."""
    missing: list[str] = []
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, Mapping) and role_of(message) == "assistant" else None
        if not isinstance(calls, list):
            continue
        answered = set()
        for later in messages[i + 1 :]:
            if role_of(later) != "tool":
                break
            answered.add(later.get("tool_call_id"))
        ids = [c.get("id") for c in calls if isinstance(c, Mapping)]
        missing += [call_id for call_id in ids if isinstance(call_id, str) and call_id not in answered]
    return missing


async def _stream(
    request: web.Request,
    reply: Reply,
    envelope: Envelope,
    events: Iterator[Event],
    pacing: tuple[float, float],
) -> tuple[web.StreamResponse, str]:
    """Writes the SSE stream; returns the response and the outcome (ok, client_gone, hang_timeout).

    `pacing` is (pause between chunks, bound of the hang hook), both in seconds.
    """
    delay_s, hang_limit_s = pacing
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    chunks: Iterator[Event] = head_chunks(reply, envelope) if reply.hang else events
    try:
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        for index, chunk in enumerate(chunks):
            if index and delay_s > 0:
                await asyncio.sleep(delay_s)
            await response.write(_event(chunk))
        if reply.hang:
            if await hang_until_client_leaves(request, hang_limit_s):
                return response, "client_gone"
            # An error event (the SDK raises APIError on it) and no [DONE]: the answer never finished.
            await response.write(_event({"error": {"message": GAVE_UP, "type": "server_error", "code": "model_hang"}}))
            await response.write_eof()
            return response, "hang_timeout"
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionError:
        return response, "client_gone"
    return response, "ok"


def _event(payload: Event) -> bytes:
    if isinstance(payload, str):
        return b": " + payload.removeprefix(": ").encode() + b"\n\n"  # an SSE comment (keep-alive)
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class FiredFaults:
    """The requests (by key) whose injected fault already fired: the most recent `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def first_time(self, key: str) -> bool:
        """True the first time `key` is seen (or after it was forgotten); remembers it."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True


def _once(faults: set[str], request_key: str, failed_once: FiredFaults) -> set[str]:
    """`[[stream-error]]` fires on the first of identical requests only: a retry succeeds."""
    if "stream-error" not in faults:
        return faults
    key = hashlib.sha256(request_key.encode()).hexdigest()
    return faults if failed_once.first_time(key) else faults - {"stream-error"}


def _log_fields(
    model: str, stream: bool, outcome: str, status: int, elapsed: float, reply: Reply | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": model, "stream": stream, "outcome": outcome, "status": status}
    fields["duration_ms"] = round(elapsed * 1000, 1)
    if reply is not None and status == 200:
        fields["tool_calls"] = ",".join(call.name for call in reply.tool_calls)
        fields["finish_reason"] = "tool_calls" if reply.tool_calls else "stop"
    return fields
