"""Prometheus metrics of the reasoner (agentry_reasoner_*, base units)."""

from prometheus_client import Counter, Gauge, Histogram

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
PARTITIONS_OWNED = Gauge("agentry_reasoner_partitions_owned", "turns.<p> partitions this replica holds.")
REBALANCES = Counter(
    "agentry_reasoner_rebalances_total", "Times this replica took or let go of partitions (members joined or left)."
)
