"""Publishing an accepted client message as a turn on the bus (after the claim).

With a turn budget on (`BUDGET_*`), memory admits the turn first: over budget it is
`Rejected(rate_limited | budget_exceeded)` with `retry_after`, and nothing is published.
Every broker failure becomes `Rejected(unavailable)`: the message was NOT accepted and the
client may send it again. The gateway never answers `message.accepted` itself; the memory
service does, after it has stored the turn and assigned its seq.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import aio_pika
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import TurnBudgets
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.logs import bind_context
from agentry_shared.tracing import current_traceparent, new_trace, sending
from aio_pika.abc import AbstractRobustChannel
from aio_pika.exceptions import PublishError

from agentry_gateway import broker, metrics
from agentry_gateway.inbound import UNAVAILABLE, Rejected
from agentry_gateway.memory_client import MemoryClient
from agentry_gateway.turn_clock import TURN_CLOCK

log = logging.getLogger(__name__)

__all__ = ["Intake", "Rejected"]


class Intake:
    def __init__(
        self,
        bus: Bus,
        *,
        publish_timeout: float = 5.0,
        memory: MemoryClient | None = None,
        budgets: TurnBudgets | None = None,
    ) -> None:
        self._bus = bus
        self._publish_timeout = publish_timeout
        self._memory = memory
        self._budgets = budgets if budgets is not None and budgets.any else None
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> None:
        """Open our own confirming channel, one that reports unroutable messages.

        `Bus.publish` treats a returned (unroutable) message as delivered; a turn nobody
        would consume must instead be refused, or the client waits for an acceptance
        that never comes.
        """
        assert self._bus.connection is not None, "connect the bus first"
        self._channel = await self._bus.connection.channel(publisher_confirms=True, on_return_raises=True)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def publish(self, scope: Scope, text: str, client_message_id: str | None) -> str:
        """Publish the turn (broker-confirmed) and return its turn_id."""
        with new_trace("turn", {"agentry.conversation_id": scope.conversation_id}):  # the turn's trace starts here
            return await self._publish(scope, text, client_message_id)

    async def _publish(self, scope: Scope, text: str, client_message_id: str | None) -> str:
        channel = self._channel
        if channel is None or not broker.connected(self._bus):
            # Known down: say so now rather than after the timeout (a robust channel waits).
            raise Rejected(UNAVAILABLE, "the broker is unavailable; retry")
        turn_id = uuid.uuid4().hex
        if self._budgets is not None and self._memory is not None:
            with bind_context(conversation_id=scope.conversation_id, turn_id=turn_id):
                await self._memory.admit(scope, turn_id, self._budgets)
        turn = TurnRequested(
            scope=scope,
            turn_id=turn_id,
            text=text,
            client_message_id=client_message_id,
            accepted_at=datetime.now(UTC),
            # W3C trace context: the turn's trace rides on every message of it (tracing.py).
            traceparent=current_traceparent(),
        )
        topology = self._bus.topology
        with bind_context(conversation_id=scope.conversation_id, turn_id=turn.turn_id):
            try:
                message = aio_pika.Message(
                    encode(turn),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=turn.turn_id,
                )
                routing_key = str(topology.partition(scope.conversation_id))
                async with asyncio.timeout(self._publish_timeout):
                    exchange = await channel.get_exchange(topology.log_exchange, ensure=False)
                    with sending(topology.log_exchange, routing_key, message.headers):
                        await exchange.publish(message, routing_key=routing_key, mandatory=True)
            except PublishError as exc:
                log.error("turn unroutable: no log queue is bound")
                raise Rejected(UNAVAILABLE, "the conversation log is unavailable; retry") from exc
            except Exception as exc:
                log.warning("turn publish failed", exc_info=True)
                raise Rejected(UNAVAILABLE, "the broker is unavailable; retry") from exc
            metrics.TURNS_PUBLISHED.inc()
            TURN_CLOCK.accepted(turn.turn_id)
            log.info("turn published", extra={"tenant_id": scope.tenant_id, "user_id": scope.user_id})
        return turn.turn_id
