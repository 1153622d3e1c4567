"""Prometheus metrics of the reasoner (agentry_reasoner_*, base units).

Every label value that can occur exists at 0 from start-up (agentry_shared.metrics), so
the first failure of a kind shows in `increase()`; per-model series are created when the
models are built (`watch_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, get_args

from agentry_shared.contracts.errors import ToolErrorCode, TurnFailureCode, codes
from agentry_shared.metrics import initialise
from prometheus_client import Counter, Gauge, Histogram

# What a turn can end as: completed, a failure code, or a redelivered turn already done.
TURN_OUTCOMES: Final = frozenset({"completed", "duplicate", "failed"}) | codes(TurnFailureCode)
# How one model request ended: ok, or the failure it becomes (items.ModelUnavailable, ...).
ModelRequestOutcome = Literal["ok", "model_unavailable", "model_error", "context_too_long", "abandoned"]
TokenDirection = Literal["input", "output"]
TokenSource = Literal["usage", "estimate"]
FallbackReason = Literal["open", "failed"]
BREAKER_STATES: Final[dict[str, int]] = {"closed": 0, "open": 1, "half_open": 2}

TURNS = Counter(
    "agentry_reasoner_turns_total", "Turns finished, by outcome (completed or the failure code).", ["outcome"]
)
TURN_SECONDS = Histogram(
    "agentry_reasoner_turn_duration_seconds",
    "Time from taking a turn to its last frame.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TURNS_IN_FLIGHT = Gauge("agentry_reasoner_turns_in_flight", "Turns this replica is working on.")
TOOL_CALL_REJECTIONS = Counter(
    "agentry_reasoner_tool_call_rejections_total",
    "Tool calls of the model refused before dispatch, by reason (unknown_tool, invalid_arguments, ...).",
    ["reason"],
)
TOOL_CALLS_PER_TURN = Histogram(
    "agentry_reasoner_tool_calls_per_turn",
    "Tool calls the model asked for in one turn (counted when the turn ends).",
    buckets=(0, 1, 2, 3, 4, 6, 8, 12, 16, 32),
)
PARTITIONS_OWNED = Gauge("agentry_reasoner_partitions_owned", "turns.<p> partitions this replica holds.")
REBALANCES = Counter(
    "agentry_reasoner_rebalances_total", "Times this replica took or let go of partitions (members joined or left)."
)

MODEL_REQUESTS = Counter(
    "agentry_reasoner_model_requests_total",
    "Model requests (one streamed chat completion each, SDK retries inside), by model and outcome.",
    ["model", "outcome"],
)
MODEL_REQUEST_SECONDS = Histogram(
    "agentry_reasoner_model_request_duration_seconds",
    "Time from sending a model request to the end of its stream.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
MODEL_FIRST_TOKEN_SECONDS = Histogram(
    "agentry_reasoner_model_time_to_first_token_seconds",
    "Time from sending a model request to its first token (reasoning, text or a tool call).",
    ["model"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
MODEL_TOKENS = Counter(
    "agentry_reasoner_model_tokens_total",
    "Tokens sent to (input) and produced by (output) each model; source `usage` when the "
    "server reported them, `estimate` (characters / 4) when it did not.",
    ["model", "direction", "source"],
)
MODEL_BREAKER_STATE = Gauge(
    "agentry_reasoner_model_breaker_state",
    "The circuit breaker of each model: 0 closed, 1 open, 2 half-open (one trial call allowed).",
    ["model"],
)
MODEL_FALLBACKS = Counter(
    "agentry_reasoner_model_fallbacks_total",
    "Model requests sent to a fallback model, by why the model before it was passed over "
    "(open: its breaker was open; failed: it failed this request).",
    ["reason"],
)

initialise(TURNS, TURN_OUTCOMES)
initialise(TOOL_CALL_REJECTIONS, codes(ToolErrorCode))
initialise(MODEL_FALLBACKS, get_args(FallbackReason))


def watch_model(name: str, breaker_state: Callable[[], str]) -> None:
    """Creates one model's series at 0 and reads its breaker's state at every scrape."""
    initialise(MODEL_REQUESTS, [name], get_args(ModelRequestOutcome))
    initialise(MODEL_TOKENS, [name], get_args(TokenDirection), get_args(TokenSource))
    MODEL_REQUEST_SECONDS.labels(name)
    MODEL_FIRST_TOKEN_SECONDS.labels(name)
    MODEL_BREAKER_STATE.labels(name).set_function(lambda: BREAKER_STATES.get(breaker_state(), 1))
