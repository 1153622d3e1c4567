"""The service's Prometheus metrics (served on /metrics by the shared ops server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_REQUESTS = Counter(
    "agentry_memory_rpc_requests_total",
    "Memory RPC requests answered, by request kind and outcome (ok or the failure code).",
    ["kind", "outcome"],
)
RPC_DURATION = Histogram(
    "agentry_memory_rpc_duration_seconds",
    "Time to answer one memory RPC request.",
    ["kind"],
)
LOG_ENTRIES = Counter(
    "agentry_memory_log_entries_total",
    "Conversation log entries handled, by kind and outcome (ok, rejected, handed_back, unacked).",
    ["kind", "outcome"],
)
LOG_ENTRY_DURATION = Histogram(
    "agentry_memory_log_entry_duration_seconds",
    "Time from delivery to ack of one conversation log entry (store and publish).",
    ["kind"],
)
FRAMES_APPENDED = Counter(
    "agentry_memory_frames_appended_total",
    "Frames given a new seq and stored (redeliveries not counted).",
)
DEAD_LETTERS = Counter(
    "agentry_memory_dead_letters_total",
    "Messages taken from the dead-letter queue, by kind and outcome "
    "(turn_failed, already_ended, refused, logged, unreadable, error).",
    ["kind", "outcome"],
)
FRAMES_SWEPT = Counter(
    "agentry_memory_frames_swept_total",
    "Frames deleted because they were older than the retention.",
)
REASONING_SWEPT = Counter(
    "agentry_memory_reasoning_swept_total",
    "Reasoning steps deleted because they were older than MEMORY_REASONING_RETENTION_DAYS.",
)
SUMMARIES = Counter(
    "agentry_memory_summaries_total",
    "Rolling summary refreshes, by outcome (saved, superseded, failed).",
    ["outcome"],
)
PARTITIONS_OWNED = Gauge("agentry_memory_partitions_owned", "log.<p> partitions this replica sequences.")
REBALANCES = Counter(
    "agentry_memory_rebalances_total", "Times this replica took or let go of partitions (members joined or left)."
)
