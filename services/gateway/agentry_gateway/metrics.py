"""The gateway's Prometheus metrics (served on /metrics of the WebSocket port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("agentry_gateway_connections", "Open client WebSocket connections")
CLIENT_FRAMES = Counter(
    "agentry_gateway_client_frames_total",
    "Client frames received, by outcome (accepted, or the error code sent back)",
    ["outcome"],
)
FRAMES_SENT = Counter("agentry_gateway_frames_sent_total", "Frames sent to clients, by frame type", ["type"])
TURNS_PUBLISHED = Counter("agentry_gateway_turns_published_total", "TurnRequested messages confirmed by the broker")
SLOW_CONSUMER_DISCONNECTS = Counter(
    "agentry_gateway_slow_consumer_disconnects_total",
    "Sockets closed with 1013 because their send queue overflowed",
)
