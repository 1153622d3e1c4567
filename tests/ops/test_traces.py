"""Traces end to end: a calculator turn through all five processes exports one trace over
OTLP/HTTP, whose consumer spans are children of the publishers' spans across the broker,
and whose trace id is on the turn's log lines. Then a conversation long enough for memory
to summarise its older turns: the summary's model call is a span of the turn whose
context request started it.

The collector is a loopback HTTP server here that decodes each POST /v1/traces with the
OTLP protobuf the SDK's exporter sends (opentelemetry-proto, installed with the exporter).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import Stack

pytestmark = pytest.mark.e2e

FIVE = {"gateway", "memory", "reasoner", "tool-runner", "offline-model"}


@dataclass(frozen=True)
class Seen:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Collector:
    """Every span POSTed to /v1/traces, decoded."""

    def __init__(self) -> None:
        self.spans: list[Seen] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.add(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    seen = Seen(
                        resource["service.name"],
                        span.name,
                        span.kind,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        attributes,
                    )
                    with self.lock:
                        self.spans.append(seen)


def _value(value: Any) -> Any:
    field = value.WhichOneof("value")
    return getattr(value, field) if field else None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()


async def test_one_trace_per_turn_across_five_processes(collector: Collector, tmp_path: Path) -> None:
    # A small window and a summary as soon as anything leaves it (memory only): the second
    # long turn's context leaves the first out, and memory summarises it.
    small_window = {"MEMORY_WINDOW_TOKENS": "256", "MEMORY_SUMMARY_TRIGGER_TOKENS": "1"}
    stack = Stack(
        tmp_path,
        per_service={"memory": small_window},
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        stack.start_all()
        async with connect(stack.ws_url) as ws:
            frames = await converse(ws, "what is 37*91?")
            long_turns = [await converse(ws, LONG)]
            long_turns.append(await converse(ws, LONG, long_turns[0][0]["conversation_id"]))
        assert "3367" in answer(frames)
        await _summary_exported(collector)
    finally:
        stack.close()  # SIGTERM: each process exports what it still buffers
    conversation = frames[0]["conversation_id"]
    (root,) = [
        s for s in collector.spans if s.name == "turn" and s.attributes["agentry.conversation_id"] == conversation
    ]
    assert root.service == "gateway" and root.parent_id == ""
    spans = [s for s in collector.spans if s.trace_id == root.trace_id]
    assert {s.service for s in spans} == FIVE
    by_id = {s.span_id: s for s in spans}
    ns = stack.namespace

    def parent_of(consumer: Seen) -> Seen:
        return by_id[consumer.parent_id]

    def hop(service: str, name: str) -> Seen:
        found = [s for s in spans if s.service == service and s.name == name]
        assert found, (service, name, sorted({(s.service, s.name) for s in spans}))
        return found[0]

    # Across the broker: a consumer's parent is the publisher's span, in the publishing process.
    for consumer_service, destination, producer_service in [
        ("memory", f"{ns}.log", "gateway"),
        ("reasoner", f"{ns}.turns", "memory"),
        ("tool-runner", f"{ns}.tools", "reasoner"),
        ("gateway", f"{ns}.frames", "memory"),
    ]:
        consumer = hop(consumer_service, f"process {destination}")
        assert consumer.kind == ProtoSpan.SPAN_KIND_CONSUMER
        assert consumer.attributes["messaging.system"] == "rabbitmq"
        producer = parent_of(consumer)
        assert (producer.service, producer.name, producer.kind) == (
            producer_service,
            f"send {destination}",
            ProtoSpan.SPAN_KIND_PRODUCER,
        )
    # The model call, over HTTP: the offline model's server span is the chat span's child.
    chats = [s for s in spans if s.service == "reasoner" and s.name.startswith("chat ")]
    assert chats and all(s.kind == ProtoSpan.SPAN_KIND_CLIENT for s in chats)
    assert all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in chats)
    assert chats[0].attributes["gen_ai.request.model"] == "agentry-offline"
    served = [s for s in spans if s.service == "offline-model"]
    assert served and {parent_of(s).span_id for s in served} <= {c.span_id for c in chats}
    assert served[0].kind == ProtoSpan.SPAN_KIND_SERVER
    # The turn's log lines carry its trace id (memory says nothing of a turn that went well);
    # the offline model's too, the turn's id coming with the request (`X-Agentry-Turn-Id`).
    turn_id = frames[0]["turn_id"]
    for name in ("gateway", "reasoner", "tool-runner", "offline-model"):
        (log_path,) = stack.workdir.glob(f"{name}-*.log")
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        of_turn = [line for line in lines if line.get("turn_id") == turn_id]
        assert of_turn, name
        assert {line.get("trace_id") for line in of_turn} == {root.trace_id}, name
    _check_summary_span(collector, stack, long_turns[1])


LONG = "Please keep this note for later: " + " ".join(f"item{i} is filed under shelf {i % 7}." for i in range(40))


def _summary_calls(collector: Collector) -> list[Seen]:
    with collector.lock:
        spans = list(collector.spans)
    return [s for s in spans if s.service == "memory" and s.attributes.get("agentry.model.purpose") == "summary"]


async def _summary_exported(collector: Collector, within: float = 30.0) -> None:
    """Until memory's summary call is exported (it runs in the background after a GetContext)."""
    deadline = time.monotonic() + within
    while not _summary_calls(collector):
        assert time.monotonic() < deadline, "memory never exported a summary model call"
        await asyncio.sleep(0.2)
    (call,) = _summary_calls(collector)

    def served() -> bool:
        with collector.lock:
            return any(s.service == "offline-model" and s.parent_id == call.span_id for s in collector.spans)

    while not served():  # and the offline model's span of it
        assert time.monotonic() < deadline, "the offline model never exported its span of the summary call"
        await asyncio.sleep(0.2)


def _check_summary_span(collector: Collector, stack: Stack, second_turn: list[dict[str, Any]]) -> None:
    """The summary's model call: a CLIENT span of memory in the trace of the turn whose
    context scheduled it (the second turn: the first left its window), below memory's span
    of that turn's log entry (memory assembles the context as it forwards the turn begun);
    the offline model's server span is its child."""
    (call,) = _summary_calls(collector)
    spans = [s for s in collector.spans if s.trace_id == call.trace_id]
    (root,) = [s for s in spans if s.name == "turn"]
    assert root.service == "gateway" and root.attributes["agentry.conversation_id"] == second_turn[0]["conversation_id"]
    (log_path,) = stack.workdir.glob("gateway-*.log")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert {line.get("trace_id") for line in lines if line.get("turn_id") == second_turn[0]["turn_id"]} == {
        call.trace_id
    }
    assert (call.service, call.name, call.kind) == ("memory", "chat agentry-offline", ProtoSpan.SPAN_KIND_CLIENT)
    assert call.attributes["gen_ai.request.model"] == "agentry-offline"
    assert call.attributes["gen_ai.usage.input_tokens"] > 0
    parent = {s.span_id: s for s in spans}[call.parent_id]
    assert parent.service == "memory" and parent.kind == ProtoSpan.SPAN_KIND_CONSUMER
    assert parent.name == f"process {stack.namespace}.log"  # the turn's entry in the log
    served = [s for s in spans if s.service == "offline-model" and s.parent_id == call.span_id]
    assert served and served[0].kind == ProtoSpan.SPAN_KIND_SERVER
    # The model's line of the summary call names the turn whose context asked for it.
    (log_path,) = stack.workdir.glob("offline-model-*.log")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    summary_lines = [line for line in lines if line.get("span_id") == served[0].span_id]
    assert [line.get("turn_id") for line in summary_lines] == [second_turn[0]["turn_id"]]
