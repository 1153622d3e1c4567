"""The gateway's Prometheus metrics (served on /metrics of the WebSocket port)."""

from __future__ import annotations

from typing import get_args

from agentry_shared.contracts.errors import ClientErrorCode, TurnFailureCode, codes
from agentry_shared.contracts.frames import SERVER_FRAME_TYPES
from agentry_shared.metrics import initialise
from prometheus_client import Counter, Gauge, Histogram

from agentry_gateway.auth import RefusalReason

CONNECTIONS = Gauge("agentry_gateway_connections", "Open client WebSocket connections")
CLIENT_FRAMES = Counter(
    "agentry_gateway_client_frames_total",
    "Client frames received, by outcome (accepted, the error code sent back, or "
    "rate_limited_silently: dropped unanswered within a rate-limit window)",
    ["outcome"],
)
FRAMES_SENT = Counter("agentry_gateway_frames_sent_total", "Frames sent to clients, by frame type", ["type"])
TURNS_PUBLISHED = Counter("agentry_gateway_turns_published_total", "TurnRequested messages confirmed by the broker")
SLOW_CONSUMER_DISCONNECTS = Counter(
    "agentry_gateway_slow_consumer_disconnects_total",
    "Sockets closed with 1013 because their send queue overflowed",
)
REPLAYS = Counter(
    "agentry_gateway_replays_total",
    "Replays from memory, by kind (resume, catchup after a broker reconnect) and outcome (ok, failed, stalled)",
    ["kind", "outcome"],
)
REPLAYED_FRAMES = Counter("agentry_gateway_replayed_frames_total", "Frames sent from replays, by kind", ["kind"])
BROKER_DISCONNECTS = Counter("agentry_gateway_broker_disconnects_total", "Broker connection losses")
BROKER_RECONNECTS = Counter("agentry_gateway_broker_reconnects_total", "Broker connections restored")
AUTH_REFUSALS = Counter(
    "agentry_gateway_auth_refusals_total",
    "Refused logins (handshakes and reauth frames), by reason (auth.REFUSAL_MEANINGS)",
    ["reason"],
)
# Every reason exported from the start at 0, so a rate() or an alert sees the first one.
for _reason in get_args(RefusalReason):
    AUTH_REFUSALS.labels(_reason)

# ---- what a client waits for, and every label value at 0 from start-up -----------------

TIME_TO_FIRST_TOKEN = Histogram(
    "agentry_gateway_time_to_first_token_seconds",
    "From the turn's publish (the message accepted) to its first `message.delta` sent to the "
    "client, as this gateway sees it.",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
)
TURN_DURATION = Histogram(
    "agentry_gateway_turn_duration_seconds",
    "From the turn's publish to its terminal frame (turn.completed, turn.failed), by outcome "
    "(completed or the turn.failed code).",
    ["outcome"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)

FRAME_TYPES = frozenset(SERVER_FRAME_TYPES) | {"error", "conversations"}
# rate_limited_silently: over the rate limit after the window's one `rate_limited` reply.
initialise(CLIENT_FRAMES, {"accepted", "rate_limited_silently"} | codes(ClientErrorCode))
initialise(FRAMES_SENT, FRAME_TYPES)
initialise(REPLAYS, ("resume", "catchup"), ("ok", "failed", "stalled"))
initialise(REPLAYED_FRAMES, ("resume", "catchup"))
initialise(TURN_DURATION, {"completed"} | codes(TurnFailureCode))
