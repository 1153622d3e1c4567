"""What a dead letter says about itself, read by memory (which handles them) and by
agentry-admin (which lists and replays them): where it died, and what memory did with it.

RabbitMQ records a message's deaths in its `x-death` header (newest first) and the first
one in `x-first-death-*`. Memory, once it has handled a dead letter (told the user of a
dead turn, or logged what it could not act on), keeps it in `<ns>.dead.handled` with
the `x-agentry-handled-*` headers below, so an operator sees every dead letter, not only
those memory has not reached yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Headers the broker adds when it dead-letters: a replayed message starts afresh without them.
DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
# What memory adds when it keeps a handled dead letter (its outcome as in the
# agentry_memory_dead_letters_total metric: turn_failed, already_ended, logged, ...).
HANDLED_OUTCOME = "x-agentry-handled-outcome"
HANDLED_KIND = "x-agentry-handled-kind"
HANDLED_AT = "x-agentry-handled-at"
HANDLED_HEADERS = (HANDLED_OUTCOME, HANDLED_KIND, HANDLED_AT)


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Death:
    """The first death of a message: where it came from and why it died."""

    exchange: str
    routing_key: str
    queue: str
    reason: str
    count: int


def first_death(headers: dict[str, Any] | None, routing_key: str | None) -> Death:
    """From `x-death` (the entry of the first death's queue), else `x-first-death-*`."""
    headers = headers or {}
    first_queue = text(headers.get("x-first-death-queue", ""))
    raw: Any = headers.get("x-death") or []
    deaths: list[dict[str, Any]] = [d for d in raw if isinstance(d, dict)]
    death = next((d for d in deaths if text(d.get("queue", "")) == first_queue), deaths[-1] if deaths else {})
    routing_keys: list[Any] = death.get("routing-keys") or [routing_key or ""]
    return Death(
        exchange=text(death.get("exchange", headers.get("x-first-death-exchange", ""))),
        routing_key=text(routing_keys[0]),
        queue=first_queue or text(death.get("queue", "")),
        reason=text(death.get("reason", headers.get("x-first-death-reason", ""))),
        count=int(death.get("count", 1)),
    )


def fresh_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The headers a replayed message goes back with: no trace of its death or handling."""
    dropped = set(DEATH_HEADERS + HANDLED_HEADERS)
    return {key: value for key, value in (headers or {}).items() if key not in dropped}
