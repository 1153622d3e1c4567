"""The dead letters: look without losing, and send back where they came from.

Two queues hold them: `<ns>.dead`, where the broker puts them and memory takes them, and
`<ns>.dead.handled`, where memory keeps each one it handled (told the user of a dead turn,
or logged what it could not act on), with its outcome. Listing both shows every dead
letter of the namespace, handled or not (the handled ones bounded: 10,000, 14 days).

Nothing here ever drops a message. Each one is taken with a manual ack, and acked only
after the broker confirmed what replaces it: its copy at the tail of the dead queue
(`list`, and what `replay` leaves), or the original message on its original exchange and
routing key (`replay`, from the broker's `x-death` header). Taking exactly as many as the
queue held at the start and copying each to the tail leaves the queue in its order.
A crash between the confirm and the ack leaves a duplicate, never a gap.

Why not get-and-requeue (close the channel without acking): quorum queues count that as a
delivery, and with RabbitMQ 4's default delivery limit (20) a dead letter listed twenty
times would be dropped: the dead queue has nowhere else to send it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from agentry_shared.dead_letters import HANDLED_AT, HANDLED_KIND, HANDLED_OUTCOME, first_death, fresh_headers, text
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage


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
    listed_from: str = ""  # the queue it was found in
    handled: dict[str, str] | None = None  # memory's outcome, kind and time; None: not handled yet

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "queue": self.listed_from,
            "handled": self.handled,
            "message_id": self.message_id,
            "from_exchange": self.exchange,
            "from_routing_key": self.routing_key,
            "from_queue": self.queue,
            "reason": self.reason,
            "deaths": self.count,
            "body": self.body,
        }


def origin(message: AbstractIncomingMessage, index: int = 0, listed_from: str = "") -> DeadLetter:
    """Where the message died first (the broker's `x-death`), and what memory did with it."""
    headers: dict[str, Any] = dict(message.headers or {})
    death = first_death(headers, message.routing_key)
    handled = None
    if HANDLED_OUTCOME in headers:
        handled = {
            "outcome": text(headers[HANDLED_OUTCOME]),
            "kind": text(headers.get(HANDLED_KIND, "")),
            "at": text(headers.get(HANDLED_AT, "")),
        }
    return DeadLetter(
        index=index,
        message_id=message.message_id,
        exchange=death.exchange,
        routing_key=death.routing_key,
        queue=death.queue,
        reason=death.reason,
        count=death.count,
        body=message.body.decode(errors="replace"),
        listed_from=listed_from,
        handled=handled,
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
    start: int = 0,
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """Take every message the queue held at the start once: those `replay` picks go back to
    their origin, the others to the tail of the queue. Returns (kept, replayed), numbered
    from `start` in the queue's order."""
    queue = await channel.declare_queue(queue_name, passive=True)
    held = queue.declaration_result.message_count or 0
    kept: list[DeadLetter] = []
    replayed: list[DeadLetter] = []
    for index in range(start, start + held):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break  # someone else (memory) took the rest
        letter = origin(message, index, queue_name)
        if replay(letter):
            fresh = fresh_headers(message.headers)
            exchange = await channel.get_exchange(letter.exchange) if letter.exchange else channel.default_exchange
            await exchange.publish(_copy(message, headers=fresh), routing_key=letter.routing_key, mandatory=True)
            replayed.append(letter)
        else:
            await channel.default_exchange.publish(_copy(message), routing_key=queue_name)
            kept.append(letter)
        await message.ack()
    return kept, replayed
