"""The broker connection every service uses: topology, confirmed publishing, RPC.

aio-pika directly rather than FastStream: our consumers need single-active-consumer
partition queues with per-conversation ordering, per-gateway bindings made and dropped
as sockets come and go, and RPC over direct reply-to; all are one call here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from pydantic import BaseModel

from agentry_shared.access import declared_exchanges
from agentry_shared.topology import Topology
from agentry_shared.tracing import processing, sending

log = logging.getLogger(__name__)

QUORUM = {"x-queue-type": "quorum"}
# `<ns>.dead.handled`: what memory handled, kept for operators but bounded (the oldest go
# first, none older than 14 days), so a storm of dead letters cannot fill the broker.
HANDLED_DEAD_LETTERS: dict[str, Any] = {
    **QUORUM,
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
    "x-message-ttl": 14 * 24 * 3600 * 1000,
}
REPLY_TO = "amq.rabbitmq.reply-to"


class RpcTimeout(Exception):
    """No reply in time: the callee is down, overloaded or gone."""


@dataclass(frozen=True)
class Consumer:
    """A running consumer; `cancel` stops deliveries (what is in hand still finishes)."""

    queue: AbstractQueue
    tag: str

    async def cancel(self) -> None:
        await self.queue.cancel(self.tag)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


class Bus:
    """One robust connection, one confirming channel for publishing, RPC on demand."""

    def __init__(self, url: str, topology: Topology, name: str) -> None:
        self.url = url
        self.topology = topology
        self.name = name
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._rpc_channel: AbstractRobustChannel | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._rpc_lock = asyncio.Lock()
        self._restored = False

    @property
    def connected(self) -> bool:
        """Connected and every channel restored: what readiness means (a reconnected
        transport whose channels are still being restored cannot take work yet)."""
        return self.connection is not None and not self.connection.is_closed and self._restored

    def _on_lost(self, *_: object) -> None:
        self._restored = False

    def _on_restored(self, *_: object) -> None:
        self._restored = True

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url, client_properties={"connection_name": self.name})
        self.connection.close_callbacks.add(self._on_lost)
        self.connection.reconnect_callbacks.add(self._on_restored)  # fired after channels are restored
        # A work message that no queue takes must fail loudly, never vanish.
        self._publish_channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await self.declare_exchanges()
        self._restored = True

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def channel(self, prefetch: int) -> AbstractRobustChannel:
        assert self.connection is not None, "connect() first"
        channel: AbstractRobustChannel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    @property
    def publish_channel(self) -> AbstractRobustChannel:
        assert self._publish_channel is not None, "connect() first"
        return self._publish_channel

    # ---- topology -------------------------------------------------------------------

    async def declare_exchanges(self) -> None:
        """The exchanges this service publishes to or binds from (all of them for a Bus not
        named after a service): each service's broker user may configure only those."""
        t = self.topology
        ch = self.publish_channel
        declared = declared_exchanges(t, self.name)
        for name in declared:
            kind = ExchangeType.FANOUT if name == t.control_exchange else ExchangeType.DIRECT
            await ch.declare_exchange(name, kind, durable=True)
        if t.dead_letter_exchange in declared:
            dead = await ch.declare_queue(t.dead_letter_queue, durable=True, arguments=QUORUM)
            await dead.bind(t.dead_letter_exchange, routing_key="#")

    async def declare_work_queue(
        self, channel: AbstractRobustChannel, name: str, exchange: str, routing_key: str, *, single_active: bool
    ) -> AbstractQueue:
        """A durable quorum queue; poison messages go to the dead-letter exchange."""
        arguments: dict[str, Any] = {
            **QUORUM,
            "x-dead-letter-exchange": self.topology.dead_letter_exchange,
            "x-dead-letter-routing-key": "#",
            # High by default, so redeliveries from graceful restarts (a closed channel
            # counts one for every prefetched message) never dead-letter healthy work.
            "x-delivery-limit": self.topology.delivery_limit,
        }
        if single_active:
            arguments["x-single-active-consumer"] = True
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        await queue.bind(exchange, routing_key=routing_key)
        return queue

    # ---- publishing -----------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        persistent: bool = True,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
        timeout: float = 10.0,
        mandatory: bool | None = None,
    ) -> None:
        """Returns once the broker confirmed the message (publisher confirms).

        Persistent (work) messages are mandatory by default: if no queue is bound, this raises
        `aio_pika.exceptions.PublishError`. Transient broadcasts (frames) may find no listener.
        """
        ch = self.publish_channel
        target = ch.default_exchange if exchange == "" else await ch.get_exchange(exchange, ensure=False)
        headers = dict(headers or {})
        with sending(exchange, routing_key, headers):  # the trace context goes into the headers
            message = aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT,
                reply_to=reply_to,
                correlation_id=correlation_id,
                headers=headers,
            )
            await target.publish(
                message,
                routing_key=routing_key,
                timeout=timeout,
                mandatory=persistent if mandatory is None else mandatory,
            )

    # ---- RPC (direct reply-to) ------------------------------------------------------

    async def _ensure_rpc_channel(self) -> AbstractRobustChannel:
        async with self._rpc_lock:
            # A robust channel restores itself (and, because the reply-to pseudo-queue is
            # declared through it, its consumer) after a reconnect: never replace it.
            if self._rpc_channel is None:
                assert self.connection is not None, "connect() first"
                channel: AbstractRobustChannel = await self.connection.channel()
                queue = await channel.declare_queue(REPLY_TO, passive=True)
                await queue.consume(self._on_reply, no_ack=True)
                self._rpc_channel = channel
            return self._rpc_channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def request(self, queue: str, body: bytes, *, timeout: float = 10.0) -> bytes:
        """Send to a queue and wait for the reply; raises RpcTimeout."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            try:
                channel = await self._ensure_rpc_channel()
                headers: dict[str, Any] = {}
                with sending("", queue, headers):
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            reply_to=REPLY_TO,
                            correlation_id=correlation_id,
                            expiration=timeout,
                            headers=headers,
                        ),
                        routing_key=queue,
                    )
            except (aiormq.exceptions.ChannelInvalidStateError, aio_pika.exceptions.AMQPError) as exc:
                # The robust connection is reconnecting: to the caller it is "no reply", retryable.
                raise RpcTimeout(f"broker unavailable for a request to {queue}: {exc}") from exc
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise RpcTimeout(f"no reply from {queue} within {timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def serve_rpc(
        self, queue_name: str, handler: Callable[[bytes], Awaitable[bytes]], *, prefetch: int = 32
    ) -> Consumer:
        """Answer requests on a shared durable queue; replicas share the load."""
        channel = await self.channel(prefetch)
        queue = await channel.declare_queue(queue_name, durable=True)

        async def on_request(message: AbstractIncomingMessage) -> None:
            async with message.process(requeue=False, ignore_processed=True):
                with processing(message.headers, message.exchange, message.routing_key):
                    await answer(message)

        async def answer(message: AbstractIncomingMessage) -> None:
            try:
                reply = await handler(message.body)
            except Exception:
                log.exception("rpc handler failed", extra={"queue": queue_name})
                raise
            if message.reply_to:
                headers: dict[str, Any] = {}
                with sending("", message.reply_to, headers):
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            reply,
                            content_type="application/json",
                            correlation_id=message.correlation_id,
                            headers=headers,
                        ),
                        routing_key=message.reply_to,
                    )

        return Consumer(queue, await queue.consume(on_request))
