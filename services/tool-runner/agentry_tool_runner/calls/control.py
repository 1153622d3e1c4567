"""Hearing the control broadcasts: every tool-runner must hear every cancel.

The control exchange is a fanout, so each worker binds a queue of its own: exclusive
(gone with the connection), auto-delete, and named by us rather than by the server,
because aio-pika's robust connection re-declares it by name after a reconnect. A cancel
broadcast while the connection is down is missed; the turn's deadline still bounds it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable

from agentry_shared.bus import Bus, Consumer
from agentry_shared.contracts.control import CONTROL_MESSAGE, CancelRequested
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel
from pydantic import ValidationError

log = logging.getLogger(__name__)


class ControlListener:
    def __init__(self, bus: Bus, on_cancel: Callable[[CancelRequested], None]) -> None:
        self.bus = bus
        self.on_cancel = on_cancel
        self.queue_name = f"{bus.topology.namespace}.tool-runner.{uuid.uuid4().hex}"
        self._channel: AbstractRobustChannel | None = None
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._channel = await self.bus.channel(prefetch=64)
        queue = await self._channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        await queue.bind(self.bus.topology.control_exchange, routing_key="")
        # no_ack: a broadcast is only worth something now; the queue dies with us anyway.
        self._consumer = Consumer(queue, await queue.consume(self._on_message, no_ack=True))

    async def stop(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.cancel()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            control = CONTROL_MESSAGE.validate_json(message.body)
        except ValidationError:
            body = message.body[:200].decode(errors="replace")
            log.warning("unreadable control message dropped", extra={"body": body})
            return
        if isinstance(control, CancelRequested):
            self.on_cancel(control)
