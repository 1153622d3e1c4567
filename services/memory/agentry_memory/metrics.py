"""The service's Prometheus metrics (served on /metrics by the shared ops server)."""

from __future__ import annotations

from typing import Any, Final, get_args

from agentry_shared.contracts.errors import MemoryFailureCode, codes
from agentry_shared.contracts.events import LogEntry
from agentry_shared.contracts.facts import FactRequest
from agentry_shared.contracts.memory import MemoryRequest
from agentry_shared.metrics import initialise
from prometheus_client import Counter, Gauge, Histogram


def kinds_of(union: Any) -> set[str]:
    """The `kind` values of a discriminated union of contract models."""
    members = get_args(get_args(union)[0])
    return {str(model.model_fields["kind"].default) for model in members}


RPC_KINDS: Final = {kind.removeprefix("memory.") for kind in kinds_of(MemoryRequest) | kinds_of(FactRequest)} | {
    "unknown"
}
LOG_KINDS: Final = kinds_of(LogEntry)

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
    "(turn_failed, already_ended, refused, logged, unreadable, error, erased).",
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
STORE_OPERATION_DURATION = Histogram(
    "agentry_memory_store_operation_duration_seconds",
    "Time of one store operation as memory waits for it (SQLite: its thread's queue included), "
    "by backend (sqlite, mongodb) and operation (a `Store` method).",
    ["backend", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

initialise(RPC_REQUESTS, RPC_KINDS, {"ok"} | codes(MemoryFailureCode))
initialise(RPC_DURATION, RPC_KINDS)
initialise(LOG_ENTRIES, LOG_KINDS | {"unknown"}, ("ok", "rejected", "handed_back", "unacked"))
initialise(LOG_ENTRY_DURATION, LOG_KINDS)
initialise(
    DEAD_LETTERS,
    LOG_KINDS | {"unknown"},
    ("turn_failed", "already_ended", "refused", "logged", "unreadable", "error", "erased"),
)
initialise(SUMMARIES, ("saved", "superseded", "failed"))
