"""The broker connection every service uses: topology, confirmed publishing, RPC.

aio-pika directly rather than FastStream: our consumers need single-active-consumer
partition queues with per-conversation ordering, per-gateway bindings made and dropped
as sockets come and go, and RPC; all are one call here.

RPC never uses the default exchange (it reaches every queue by name, so the right to
write to it is the right to post anywhere): a request goes to its server's exchange
(`RpcTarget`), the reply through the namespace's `replies` exchange to the caller's own
exclusive, auto-delete reply queue, bound by its own name. Each service's broker user may
then write only to the exchanges of the servers it calls (`access.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from pamqp.commands import Basic
from pydantic import BaseModel

from agentry_shared.access import declared_exchanges
from agentry_shared.logs import bind_context
from agentry_shared.topology import RpcTarget, Topology
from agentry_shared.tracing import processing, sending

log = logging.getLogger(__name__)

QUORUM = {"x-queue-type": "quorum"}
JSON = "application/json"
PERSISTENT, TRANSIENT = 2, 1  # AMQP delivery modes
# `<ns>.dead.handled`: what memory handled, kept for operators but bounded (the oldest go
# first, none older than 14 days), so a storm of dead letters cannot fill the broker.
HANDLED_DEAD_LETTERS: dict[str, Any] = {
    **QUORUM,
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
    "x-message-ttl": 14 * 24 * 3600 * 1000,
}


class RpcTimeout(Exception):
    """No reply in time: the callee is down, overloaded or gone."""


@dataclass(frozen=True)
class Consumer:
    """A running consumer; `cancel` stops deliveries (what is in hand still finishes)."""

    queue: AbstractQueue
    tag: str

    async def cancel(self) -> None:
        await self.queue.cancel(self.tag)


def encode(model: BaseModel, *, exclude_none: bool = False) -> bytes:
    """`exclude_none`: leave out fields that are None, for a contract whose None fields
    all have None as their default (the reader gets the same model back, in fewer bytes)."""
    return model.model_dump_json(exclude_none=exclude_none).encode()


async def basic_publish(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Basic.Properties,
    *,
    mandatory: bool,
    timeout: float | None = None,
) -> None:
    """What `Exchange.publish` does, minus its `aio_pika.Message`: building one (a lock
    check per attribute, enum and timestamp conversions) then its properties cost ~30 us,
    on every message of a turn in every service; `Basic.Properties` directly ~3 us.
    Confirms, `mandatory` returns (`on_return_raises`) and nacks are aiormq's, unchanged."""
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    underlay = await channel.get_underlay_channel()
    await underlay.basic_publish(
        body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=mandatory, timeout=timeout
    )


class Bus:
    """One robust connection, one confirming channel for publishing, RPC on demand."""

    def __init__(self, url: str, topology: Topology, name: str) -> None:
        self.url = url
        self.topology = topology
        self.name = name
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._rpc_channel: AbstractRobustChannel | None = None
        # Named by the client, not the server: a robust channel re-declares it under the
        # same name after a reconnect, so requests in flight keep a valid reply_to.
        self.reply_queue = topology.reply_queue(re.sub(r"[^A-Za-z0-9_-]", "-", name), uuid.uuid4().hex)
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
        kinds = {
            t.control_exchange: ExchangeType.FANOUT,
            t.replies_exchange: ExchangeType.TOPIC,
            t.handled_dead_letter_exchange: ExchangeType.FANOUT,
        }
        for name in declared:
            kind = kinds.get(name, ExchangeType.DIRECT)
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
        if not exchange:
            raise ValueError("the default exchange is not used (see access.py); name an exchange")
        headers = dict(headers) if headers else {}
        with sending(exchange, routing_key, headers):  # the trace context goes into the headers
            properties = Basic.Properties(
                content_type=JSON,
                delivery_mode=PERSISTENT if persistent else TRANSIENT,
                reply_to=reply_to,
                correlation_id=correlation_id,
                headers=headers,
            )
            await basic_publish(
                self.publish_channel,
                exchange,
                routing_key,
                body,
                properties,
                mandatory=persistent if mandatory is None else mandatory,
                timeout=timeout,
            )

    # ---- RPC ------------------------------------------------------------------------

    async def _ensure_rpc_channel(self) -> AbstractRobustChannel:
        async with self._rpc_lock:
            # A robust channel restores itself, and the reply queue, its binding and its
            # consumer declared through it, after a reconnect: never replace it.
            if self._rpc_channel is None:
                assert self.connection is not None, "connect() first"
                channel: AbstractRobustChannel = await self.connection.channel()
                queue = await channel.declare_queue(self.reply_queue, exclusive=True, auto_delete=True)
                await queue.bind(self.topology.replies_exchange, routing_key=self.reply_queue)
                await queue.consume(self._on_reply, no_ack=True)
                self._rpc_channel = channel
            return self._rpc_channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def request(self, target: RpcTarget, body: bytes, *, timeout: float = 10.0) -> bytes:
        """Send to an RPC server and wait for the reply; raises RpcTimeout."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            try:
                channel = await self._ensure_rpc_channel()
                headers: dict[str, Any] = {}
                with sending(target.exchange, target.routing_key, headers):
                    properties = Basic.Properties(
                        content_type=JSON,
                        delivery_mode=TRANSIENT,
                        reply_to=self.reply_queue,
                        correlation_id=correlation_id,
                        expiration=str(int(timeout * 1000)),
                        headers=headers,
                    )
                    await basic_publish(channel, target.exchange, target.routing_key, body, properties, mandatory=True)
            except (aiormq.exceptions.ChannelInvalidStateError, aio_pika.exceptions.AMQPError) as exc:
                # The robust connection is reconnecting: to the caller it is "no reply", retryable.
                raise RpcTimeout(f"broker unavailable for a request to {target.queue}: {exc}") from exc
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise RpcTimeout(f"no reply from {target.queue} within {timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def reply(self, request: AbstractIncomingMessage, body: bytes) -> None:
        """Answer `request` through the replies exchange (confirmed, transient). A reply_to
        that is not a reply queue of this namespace is dropped with a warning: publishing
        outside what the user may write would close the channel."""
        await self._reply(self.publish_channel, request, body)

    async def _reply(self, channel: AbstractRobustChannel, request: AbstractIncomingMessage, body: bytes) -> None:
        reply_to = request.reply_to or ""
        if not self.topology.is_reply_queue(reply_to):
            log.warning("request without a valid reply_to; no reply", extra={"reply_to": reply_to[:200]})
            return
        headers: dict[str, Any] = {}
        with sending(self.topology.replies_exchange, reply_to, headers):
            properties = Basic.Properties(
                content_type=JSON, delivery_mode=TRANSIENT, correlation_id=request.correlation_id, headers=headers
            )
            await basic_publish(
                channel, self.topology.replies_exchange, reply_to, body, properties, mandatory=True, timeout=10.0
            )

    async def serve_rpc(
        self, target: RpcTarget, handler: Callable[[bytes], Awaitable[bytes]], *, prefetch: int = 32
    ) -> Consumer:
        """Answer requests on a shared durable queue; replicas share the load."""
        channel = await self.channel(prefetch)
        queue = await channel.declare_queue(target.queue, durable=True)
        await queue.bind(target.exchange, routing_key=target.routing_key)

        async def on_request(message: AbstractIncomingMessage) -> None:
            async with message.process(requeue=False, ignore_processed=True):
                with processing(message.headers, message.exchange, message.routing_key):
                    await answer(message)

        async def answer(message: AbstractIncomingMessage) -> None:
            """A request whose handler or reply fails is logged here, with the turn it names,
            and dropped (acked, never redelivered to fail again): the caller times out. Not
            raised: the broker library would log it a second time, without the ids."""
            try:
                reply = await handler(message.body)
            except Exception:
                failed("rpc handler failed", message)
                return
            try:
                await self._reply(channel, message, reply)
            except Exception:
                failed("rpc reply failed", message)

        def failed(what: str, message: AbstractIncomingMessage) -> None:
            # The handler's own ids are unbound by now: read them from the request again.
            with bind_context(**message_ids(message.body)):
                log.exception(what, extra={"queue": target.queue})

        return Consumer(queue, await queue.consume(on_request))


def message_ids(body: bytes) -> dict[str, str]:
    """The turn and conversation a message names (`turn_id`, `scope.conversation_id` or
    `conversation_id`), for log lines out of reach of the parsed message (a failed RPC
    handler's, read only then; a dead letter's). Nothing for a body that is not such JSON;
    ids cut to 128 characters."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(request, dict):
        return {}
    scope = request.get("scope")
    conversation = scope.get("conversation_id") if isinstance(scope, dict) else request.get("conversation_id")
    ids = {"turn_id": request.get("turn_id"), "conversation_id": conversation}
    return {name: value[:128] for name, value in ids.items() if isinstance(value, str) and value}
