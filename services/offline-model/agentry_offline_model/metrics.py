"""Prometheus metrics of the offline model, registered once per process."""

from __future__ import annotations

from agentry_shared.metrics import initialise
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "agentry_offline_model_requests_total",
    "Chat completion requests, by stream mode and outcome "
    "(ok, bad_request, simulated_error, client_gone, hang_timeout, cancelled).",
    ["stream", "outcome"],
)
DURATION = Histogram(
    "agentry_offline_model_request_duration_seconds",
    "Time from request to last byte of a chat completion (includes chunk delays).",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
IN_PROGRESS = Gauge(
    "agentry_offline_model_requests_in_progress",
    "Chat completion requests being answered right now.",
)

initialise(
    REQUESTS,
    ("true", "false"),
    ("ok", "bad_request", "simulated_error", "client_gone", "hang_timeout", "cancelled"),
)
initialise(DURATION, ("true", "false"))
