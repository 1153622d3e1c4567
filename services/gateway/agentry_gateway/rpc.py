"""Request/reply over RabbitMQ direct reply-to, surviving broker reconnects.

Why not `Bus.request`: its reply consumer is attached to a queue object that is looked up
(`get_queue(ensure=False)`), not declared, so aio-pika's robust channel does not restore it
after a reconnect. Every request then fails with "fast reply consumer does not exist", and
since the robust channel reopens itself, `Bus` keeps using it (seen with aio-pika 10.2).
The gateway's catch-up after a reconnect is made of memory requests, so it needs replies
right away. Here the pseudo-queue is declared passively, which RabbitMQ allows and which
makes the robust channel re-consume it on every reconnect.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
from agentry_shared.bus import REPLY_TO, Bus, RpcTimeout
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel


class RpcClient:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._channel: AbstractRobustChannel | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._lock = asyncio.Lock()

    async def request(self, queue: str, body: bytes, *, timeout: float) -> bytes:
        """Send to a queue and wait for the reply; raises RpcTimeout."""
        channel = await self._ready_channel()
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            message = aio_pika.Message(
                body,
                content_type="application/json",
                reply_to=REPLY_TO,
                correlation_id=correlation_id,
                expiration=timeout,  # an answer nobody waits for is not worth computing
            )
            await channel.default_exchange.publish(message, routing_key=queue)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise RpcTimeout(f"no reply from {queue} within {timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _ready_channel(self) -> AbstractRobustChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                connection = self._bus.connection
                if connection is None:
                    raise RuntimeError("the broker is not connected")
                channel: AbstractRobustChannel = await connection.channel()
                replies = await channel.declare_queue(REPLY_TO, passive=True)
                await replies.consume(self._on_reply, no_ack=True)
                self._channel = channel
            return self._channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)
