"""Which replicas of a role are alive, learned from heartbeats on the broker we already run.

Each replica publishes a small heartbeat every `interval` seconds to the namespace's
`members` exchange (routing key = its role) and listens on an exclusive queue bound to
its role. A member is alive while its heartbeats keep coming (`timeout` without one and
it is gone: a kill -9 or a lost machine); a replica that stops on purpose says so in a
last heartbeat, so the others take over at once. Nothing new to deploy (no ZooKeeper,
no etcd, no lease table), and it works on RabbitMQ 3.10 and up: consumer priorities
and stream queues are not needed. The broker's single active consumer stays the safety
net: two views that disagree for a moment cost latency, never exclusivity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ExchangeType
from pydantic import BaseModel, ValidationError

from agentry_shared.bus import Bus

log = logging.getLogger(__name__)


class Heartbeat(BaseModel):
    kind: str = "heartbeat"
    role: str
    member_id: str
    leaving: bool = False


class Membership:
    """The live members of one role, this replica included; `changed` fires on every change."""

    def __init__(
        self,
        bus: Bus,
        role: str,
        member_id: str,
        *,
        interval: float,
        timeout: float,
        changed: Callable[[], None],
    ) -> None:
        self.bus = bus
        self.role = role
        self.member_id = member_id
        self.interval = interval
        self.timeout = timeout
        self._changed = changed
        self._last_seen: dict[str, float] = {}
        self._queue: AbstractQueue | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def exchange(self) -> str:
        return self.bus.topology.members_exchange

    def members(self) -> list[str]:
        """Sorted ids of the live members, this one always included."""
        now = time.monotonic()
        alive = {m for m, seen in self._last_seen.items() if now - seen < self.timeout}
        return sorted(alive | {self.member_id})

    async def start(self) -> None:
        channel = await self.bus.channel(prefetch=64)
        exchange = await channel.declare_exchange(self.exchange, ExchangeType.DIRECT, durable=True)
        self._queue = await channel.declare_queue(
            f"{self.bus.topology.namespace}.members.{self.role}.{self.member_id}",
            exclusive=True,
            auto_delete=True,
            # Heartbeats are only news while fresh; a stalled listener must not pile them up.
            arguments={"x-message-ttl": int(self.timeout * 1000)},
        )
        await self._queue.bind(exchange, routing_key=self.role)
        await self._queue.consume(self._on_heartbeat, no_ack=True)
        await self._beat()
        self._task = asyncio.create_task(self._beat_forever(), name=f"{self.role}-heartbeat")

    async def leave(self) -> None:
        """Stop beating and tell the others we are going (best effort: silence also tells)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._beat(leaving=True)

    async def _beat(self, leaving: bool = False) -> None:
        body = Heartbeat(role=self.role, member_id=self.member_id, leaving=leaving).model_dump_json().encode()
        await self.bus.publish(self.exchange, self.role, body, persistent=False, mandatory=False, timeout=5.0)

    async def _beat_forever(self) -> None:
        known = self.members()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._beat()
            except Exception as exc:  # the broker is away: the robust connection comes back
                log.warning("heartbeat not sent", extra={"role": self.role, "error": repr(exc)})
            # Silence is how a killed member leaves: look for expiries on every beat.
            now = self.members()
            if now != known:
                known = now
                self._changed()

    async def _on_heartbeat(self, message: AbstractIncomingMessage) -> None:
        try:
            beat = Heartbeat.model_validate_json(message.body)
        except ValidationError:
            log.warning("ignoring a malformed heartbeat")
            return
        if beat.role != self.role or beat.member_id == self.member_id:
            return
        before = self.members()
        if beat.leaving:
            self._last_seen.pop(beat.member_id, None)
        else:
            self._last_seen[beat.member_id] = time.monotonic()
        if self.members() != before:
            self._changed()
