"""What a dead letter says about itself, read by memory (which handles them) and by
agentry-admin (which lists and replays them): where it died, and what memory did with it.

RabbitMQ records a message's deaths in its `x-death` header (newest first) and the first
one in `x-first-death-*`. Memory, once it has handled a dead letter (told the user of a
dead turn, or logged what it could not act on), keeps it in `<ns>.dead.handled` with
the `x-agentry-handled-*` headers below, so an operator sees every dead letter, not only
those memory has not reached yet; `purge` takes an erased user's letters out of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

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


def of_user(body: bytes, tenant_id: str, user_id: str) -> bool:
    """Whether a dead letter is about the user: every work message names its `scope`. One
    that cannot be read names nobody (and is kept)."""
    try:
        scope = json.loads(body).get("scope") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(scope, dict) and (scope.get("tenant_id"), scope.get("user_id")) == (tenant_id, user_id)


async def purge(channel: AbstractChannel, queue_name: str, fanout: str, tenant_id: str, user_id: str) -> int:
    """Drop the user's letters from `queue_name`; returns how many. `channel` confirms.

    Takes each message the queue held at the start once, with a manual ack: the user's
    are acked and gone; every other is acked only after the broker confirmed its copy at
    the tail (the queue keeps its order), sent through `fanout`, the exchange that feeds
    the queue (memory's broker user may write there, not to the default exchange).
    Dying midway leaves a duplicate of another user's letter, never a gap. Several purges
    may walk the queue at once: each letter is weighed by whoever takes it first."""
    queue = await channel.declare_queue(queue_name, passive=True)
    exchange = await channel.get_exchange(fanout, ensure=False)
    dropped = 0
    for _ in range(queue.declaration_result.message_count or 0):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break  # someone else holds the rest
        if of_user(message.body, tenant_id, user_id):
            dropped += 1
        else:
            copy = aio_pika.Message(
                message.body,
                headers=dict(message.headers or {}),
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                timestamp=message.timestamp,
            )
            await exchange.publish(copy, routing_key="")
        await message.ack()
    return dropped
