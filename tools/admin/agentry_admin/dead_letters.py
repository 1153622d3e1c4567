"""The dead-letter queue (`<ns>.dead`): look without losing, and send back where it came from.

Nothing here ever drops a message. Each one is taken with a manual ack, and acked only
after the broker confirmed what replaces it: its copy at the tail of the dead queue
(`list`, and what `replay` leaves), or the original message on its original exchange and
routing key (`replay`, from the broker's `x-death` header). Taking exactly as many as the
queue held at the start and copying each to the tail leaves the queue in its order.
A crash between the confirm and the ack leaves a duplicate, never a gap.

Why not get-and-requeue (close the channel without acking): quorum queues count that as a
delivery, and with RabbitMQ 4's default delivery limit (20) a dead letter listed twenty
times would be dropped: the dead queue has nowhere else to send it.

Memory consumes this queue to tell users of their dead turns (and then acks them): on a
running namespace what is listed is what memory has not handled yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

# Headers the broker adds when it dead-letters: a replayed message starts afresh without them.
DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
DEATH_HEADERS_LAST = ("x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


@dataclass(frozen=True)
class DeadLetter:
    index: int
    message_id: str | None
    exchange: str
    routing_key: str
    queue: str
    reason: str
    count: int
    body: str

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "message_id": self.message_id,
            "from_exchange": self.exchange,
            "from_routing_key": self.routing_key,
            "from_queue": self.queue,
            "reason": self.reason,
            "deaths": self.count,
            "body": self.body,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def origin(message: AbstractIncomingMessage, index: int = 0) -> DeadLetter:
    """Where the message died first, from `x-death` (the broker's record, newest first)."""
    headers: dict[str, Any] = dict(message.headers or {})
    first_queue = _text(headers.get("x-first-death-queue", ""))
    raw: Any = headers.get("x-death") or []
    deaths: list[dict[str, Any]] = [d for d in raw if isinstance(d, dict)]
    death = next((d for d in deaths if _text(d.get("queue", "")) == first_queue), deaths[-1] if deaths else {})
    routing_keys: list[Any] = death.get("routing-keys") or [message.routing_key or ""]
    return DeadLetter(
        index=index,
        message_id=message.message_id,
        exchange=_text(death.get("exchange", headers.get("x-first-death-exchange", ""))),
        routing_key=_text(routing_keys[0]),
        queue=first_queue or _text(death.get("queue", "")),
        reason=_text(death.get("reason", headers.get("x-first-death-reason", ""))),
        count=int(death.get("count", 1)),
        body=message.body.decode(errors="replace"),
    )


def _copy(message: AbstractIncomingMessage, *, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=dict(message.headers or {}) if headers is None else headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
    )


async def walk(
    channel: AbstractChannel,
    queue_name: str,
    replay: Callable[[DeadLetter], bool],
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """Take every message the queue held at the start once: those `replay` picks go back to
    their origin, the others to the tail of the queue. Returns (kept, replayed)."""
    queue = await channel.declare_queue(queue_name, passive=True)
    held = queue.declaration_result.message_count or 0
    kept: list[DeadLetter] = []
    replayed: list[DeadLetter] = []
    for index in range(held):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break  # someone else (memory) took the rest
        letter = origin(message, index)
        if replay(letter):
            fresh = {k: v for k, v in (message.headers or {}).items() if k not in DEATH_HEADERS + DEATH_HEADERS_LAST}
            exchange = await channel.get_exchange(letter.exchange) if letter.exchange else channel.default_exchange
            await exchange.publish(_copy(message, headers=fresh), routing_key=letter.routing_key, mandatory=True)
            replayed.append(letter)
        else:
            await channel.default_exchange.publish(_copy(message), routing_key=queue_name)
            kept.append(letter)
        await message.ack()
    return kept, replayed
