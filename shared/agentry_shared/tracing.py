"""One OpenTelemetry trace per turn, across every service, over the broker and HTTP.

The gateway starts the trace when it publishes a turn (`new_trace`). Every hop carries
the W3C context as the AMQP header `traceparent` (what OTel's own aio-pika
instrumentation and other W3C-aware consumers read and write), so a consumer's span
is the child of the publisher's (`sending` / `processing`). The turn's contracts keep
their `traceparent` field too: the gateway's, a fallback for a message without the
header (an old publisher, a dead-letter replayed by hand).

Why not `opentelemetry-instrumentation-aio-pika`: it ends the consumer span when the
callback returns, and memory's callback only queues the delivery (partition order);
it traces every publish, heartbeats included, as a trace of its own; and it names
spans by pre-1.26 conventions. We use its header convention, not its patching.

Off by default: without `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) no
SDK is installed and the API is a no-op that still carries the context it is given,
so the trace id still rides the messages and shows in every log line of the turn.
When on, the SDK reads the other standard variables itself (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, ...).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from agentry_shared.settings import TracingSettings

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("agentry")
# The turn a model request is for, so the model server's log lines name it beside the
# trace id. Only our offline model reads it; other servers ignore a header they do not know.
TURN_ID_HEADER = "X-Agentry-Turn-Id"


def setup_tracing(service: str, settings: TracingSettings | None = None) -> Callable[[], None]:
    """Install the SDK with an OTLP/HTTP exporter if an endpoint is set; returns what
    flushes and stops it (a no-op when tracing is off)."""
    settings = settings or TracingSettings()
    if not settings.enabled:
        return lambda: None
    # Imported only when on: the SDK and the exporter cost nothing to a service without them.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service, "service.namespace": "agentry"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting traces over OTLP/HTTP", extra={"endpoint": settings.endpoint})
    return provider.shutdown


def current_traceparent() -> str | None:
    """The W3C traceparent of the span in hand (None outside any trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def inject(headers: dict[str, Any]) -> dict[str, Any]:
    """`headers` with the current trace context added (unchanged outside any trace)."""
    propagate.inject(headers)
    return headers


def model_headers(turn_id: str | None) -> dict[str, str]:
    """The headers of a model request: the trace context (`inject`) and the turn's id,
    an opaque id the client sees too (nothing secret goes in a header), sent only when
    it is printable ASCII, what an HTTP header can carry as it is."""
    headers: dict[str, str] = inject({})
    if turn_id and turn_id.isascii() and turn_id.isprintable():
        headers[TURN_ID_HEADER] = turn_id
    return headers


def log_ids() -> dict[str, str]:
    """trace_id and span_id of the span in hand, for the log lines (empty outside a trace)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


@contextmanager
def new_trace(name: str, attributes: Mapping[str, str] | None = None) -> Iterator[Span]:
    """The root span of a turn. With tracing off, a context with fresh random ids all the
    same, so the turn's messages and log lines still share a trace id."""
    if _sdk_installed():
        parent = Context()
    else:
        ids = SpanContext(secrets.randbits(128), secrets.randbits(64), False, TraceFlags(TraceFlags.SAMPLED))
        parent = trace.set_span_in_context(NonRecordingSpan(ids), Context())
    with TRACER.start_as_current_span(name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes) as span:
        yield span


def _sdk_installed() -> bool:
    return type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")


@contextmanager
def sending(exchange: str, routing_key: str, headers: dict[str, Any]) -> Iterator[None]:
    """A PRODUCER span around one publish inside a trace; its context goes into `headers`.
    Outside any trace (heartbeats, background work) nothing is started or added."""
    if not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    if not _sdk_installed():
        # What the no-op tracer's span would do, without building one per message: it is
        # the current span again, so only its context goes into the headers.
        propagate.inject(headers)
        yield
        return
    destination = exchange or routing_key
    attributes: dict[str, str | bool] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    with TRACER.start_as_current_span(f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes):
        propagate.inject(headers)
        yield


@contextmanager
def processing(
    headers: Mapping[str, Any] | None, exchange: str | None, routing_key: str | None, traceparent: str | None = None
) -> Iterator[Span]:
    """A CONSUMER span around handling one delivery, the child of the publisher's span (from
    the `traceparent` header, else the contract's `traceparent` field, else a new trace)."""
    carrier = {k: v for k, v in (headers or {}).items() if isinstance(v, str)}
    if "traceparent" not in carrier and traceparent:
        carrier = {"traceparent": traceparent}
    parent = propagate.extract(carrier, context=Context())
    if not _sdk_installed():
        # The no-op tracer's CONSUMER span is the publisher's span itself, made current:
        # the same context (trace id in the log lines and in what we publish), per message
        # without the span machinery.
        span = trace.get_current_span(parent)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        finally:
            otel_context.detach(token)
        return
    destination = exchange or routing_key or ""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": routing_key or "",
    }
    with TRACER.start_as_current_span(
        f"process {destination}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def serving_http(headers: Mapping[str, str], method: str, route: str) -> Iterator[Span]:
    """A SERVER span for one HTTP request, continuing the caller's trace if it sent one."""
    parent = propagate.extract(dict(headers), context=Context())
    attributes = {"http.request.method": method, "http.route": route, "url.path": route}
    with TRACER.start_as_current_span(
        f"{method} {route}", context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def model_call(model: str, base_url: str | None = None) -> Iterator[Span]:
    """A CLIENT span for one chat-completion request (GenAI conventions); the caller adds
    the usage (`record_usage`) and sends `model_headers(...)` as the request's headers,
    so the model server's span continues this trace."""
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model}
    if base_url:
        attributes["server.address"] = base_url
    with TRACER.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def record_usage(span: Span, input_tokens: int, output_tokens: int, *, estimated: bool = False) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if estimated:
        span.set_attribute("agentry.usage.estimated", True)
