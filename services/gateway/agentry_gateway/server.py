"""The gateway process: WebSocket server, HTTP probes, fan-out and intake on one bus.

The bus is the caller's (main or a test), so a test can run a gateway in-process against
its own namespace and inspect it. A bus the caller connected is used at once; otherwise
the gateway serves right away (not ready, every request `unavailable`) and connects in
the background until the broker is there.

Broker outages: when the connection drops, every socket holds the conversations it
follows; when aio-pika has reconnected (queue, bindings and consumer restored), each
socket catches up from memory (`resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any
from weakref import WeakKeyDictionary

from agentry_shared.bus import Bus
from agentry_shared.lifecycle import port_in_use
from agentry_shared.settings import GatewaySettings
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from agentry_gateway import broker, inbound, metrics
from agentry_gateway.auth import AuthError, Identity
from agentry_gateway.authenticator import Authenticator, JwksVerifier, peer, verifier_from
from agentry_gateway.connection import ClientSession, Shared
from agentry_gateway.fanout import Fanout
from agentry_gateway.intake import Intake
from agentry_gateway.memory_client import MemoryClient
from agentry_gateway.openai.front import split_connection
from agentry_gateway.openai.routes import Endpoint, Parts
from agentry_gateway.resync import Tuning
from agentry_gateway.routes import WS_PATH, refusal, route

log = logging.getLogger(__name__)

# websockets closes the connection (1009) on a frame above its max_size; we set that to a
# multiple of the configured limit, so frames between the two get a `frame_too_large`
# error frame and the socket stays open.
HARD_CAP_FACTOR = 4
# As websockets' own open_timeout: a connection has this long to send its request line.
OPEN_TIMEOUT = 10.0


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        bus: Bus,
        *,
        memory_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        replay_page: int = 500,
        outage_retry_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.fanout = Fanout(bus)
        self.memory = MemoryClient(bus, timeout=memory_timeout)
        self.intake = Intake(bus, publish_timeout=publish_timeout, memory=self.memory, budgets=settings.turn_budgets())
        self.authenticator = Authenticator(verifier_from(settings), settings.auth_jwt_leeway_seconds)
        self._shared = Shared(
            limits=inbound.Limits(settings.gateway_max_frame_bytes, settings.gateway_max_text_chars),
            frames_per_second=settings.gateway_max_frames_per_second,
            send_queue_frames=settings.gateway_send_queue_frames,
            max_followed=settings.gateway_max_followed_conversations,
            fanout=self.fanout,
            intake=self.intake,
            memory=self.memory,
            tuning=Tuning(
                max_held=settings.gateway_send_queue_frames,
                page=replay_page,
                outage_retry_seconds=outage_retry_seconds,
            ),
            authenticator=self.authenticator,
        )
        self._sessions: set[ClientSession] = set()
        self._sockets_per_user: dict[tuple[str, str], int] = {}  # this replica's only
        self._attached = False
        self._background: set[asyncio.Task[None]] = set()
        # Identity decided in process_request, picked up by the handler of the same connection;
        # weak, so a handshake that fails after authentication leaves nothing behind.
        self._identities: WeakKeyDictionary[ServerConnection, Identity] = WeakKeyDictionary()
        self._server: Server | None = None
        self.openai = Endpoint(
            settings, Parts(self.fanout, self.intake, self.memory, self.authenticator, lambda: broker.connected(bus))
        )

    def ready(self) -> tuple[bool, str]:
        """Ready = the broker is connected (not mid-reconnect) and frames are consumed."""
        if not self._attached or not broker.connected(self.bus):
            return False, "broker disconnected"
        if not self.fanout.consuming:
            return False, "frames queue not consumed"
        if self._server is None or not self._server.is_serving():
            return False, "not serving"
        return True, "ok"

    async def start(self, port: int | None = None) -> int:
        """Start serving, and consuming (now, or once the broker is there); returns the port
        actually bound (port 0 = any)."""
        if self.bus.connection is not None:
            await self._attach()
        hard_cap = HARD_CAP_FACTOR * self.settings.gateway_max_frame_bytes
        await self.openai.start()
        port = self.settings.gateway_port if port is None else port
        try:
            self._server = await serve(
                self._handle,
                self.settings.bind_host,
                port,
                process_request=self._process_request,
                max_size=hard_cap,
                close_timeout=min(5.0, self.settings.shutdown_grace_seconds / 4),
                server_header=None,
                # /v1 (the OpenAI-compatible endpoint) is plain HTTP with bodies: see openai/front.py.
                create_connection=split_connection(self.openai.protocol, OPEN_TIMEOUT),
            )
        except OSError as exc:
            raise port_in_use(exc, "GATEWAY_PORT", port) from exc
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info(f"serving ws://{self.settings.bind_host}:{bound}{WS_PATH}")
        self._warn_dev_identity()
        verifier = self.authenticator.verifier
        if isinstance(verifier, JwksVerifier):
            self._spawn(verifier.keys.refresh())  # warm the key cache; handshakes fetch if this fails
        if not self._attached:
            self._spawn(self._connect_and_attach())
        return bound

    def _warn_dev_identity(self) -> None:
        if not self.settings.auth_dev_identity:
            return
        if self.authenticator.dev_identity:
            log.warning("AUTH_DEV_IDENTITY=true: no authentication, anyone is whoever ?user= says (development only)")
        else:
            log.warning("AUTH_DEV_IDENTITY=true is ignored: a verification key is set, so tokens are required")

    async def _connect_and_attach(self) -> None:
        await broker.connect_until_up(self.bus)
        await self._attach()
        log.info("consuming frames")

    async def _attach(self) -> None:
        await self.fanout.start()
        await self.intake.start()
        self.memory.start()
        connection = self.bus.connection
        assert connection is not None
        connection.close_callbacks.add(self._on_broker_lost)
        connection.reconnect_callbacks.add(self._on_broker_back)
        self._attached = True

    def _on_broker_lost(self, _sender: object, _exc: BaseException | None = None) -> None:
        """Connection lost (aio-pika reconnects by itself): our queue and what it would have
        received meanwhile are gone, so every socket holds its conversations from here."""
        connection = self.bus.connection
        if connection is None or connection.close_called:
            return  # our own shutdown
        metrics.BROKER_DISCONNECTS.inc()
        log.warning("broker connection lost; sockets will catch up after the reconnect")
        for session in tuple(self._sessions):
            session.broker_lost()

    def _on_broker_back(self, _sender: object) -> None:
        """Reconnected, channels restored (queue, bindings, consumer): catch up from memory."""
        metrics.BROKER_RECONNECTS.inc()
        log.info("broker reconnected; catching up", extra={"sockets": len(self._sessions)})
        for session in tuple(self._sessions):
            session.broker_back()
        self._spawn(self.fanout.reconcile_all())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, grace: float) -> None:
        """Refuse new sockets, close open ones with 1001 (going away), release the broker side."""
        if self._server is not None:
            self._server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
            try:
                async with asyncio.timeout(grace):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("sockets still open after the grace period")
        await self.openai.stop(min(5.0, grace / 4))  # open requests end; their turns are cancelled
        for task in tuple(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._attached = False
        self.memory.close()
        await self.intake.close()
        await self.fanout.close()

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        answer = route(request, self.ready)
        if answer is not None:
            return answer
        authorization = request.headers.get_all("Authorization")
        try:
            identity = await self.authenticator.handshake(request.path, authorization, peer(connection.remote_address))
        except AuthError as exc:
            return refusal(exc)
        self._identities[connection] = identity
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        identity = self._identities.pop(ws, None)
        if identity is None:  # cannot happen: every upgrade went through _process_request
            await ws.close(CloseCode.INTERNAL_ERROR, "no identity")
            return
        user = (identity.tenant_id, identity.user_id)
        if self._sockets_per_user.get(user, 0) >= self.settings.gateway_max_sockets_per_user:
            await self._refuse_socket(ws)
            return
        self._sockets_per_user[user] = self._sockets_per_user.get(user, 0) + 1
        session = ClientSession(ws, identity, self._shared)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._sockets_per_user[user] -= 1
            if not self._sockets_per_user[user]:
                del self._sockets_per_user[user]

    async def _refuse_socket(self, ws: ServerConnection) -> None:
        """Over GATEWAY_MAX_SOCKETS_PER_USER (on this replica): say so, then close with 1008,
        not 1013, so a client does not reconnect in a loop; it should close a socket first."""
        limit = self.settings.gateway_max_sockets_per_user
        message = f"this user has GATEWAY_MAX_SOCKETS_PER_USER ({limit}) sockets open here; close one first"
        metrics.CLIENT_FRAMES.labels(inbound.SOCKET_LIMIT).inc()
        with contextlib.suppress(ConnectionClosed):
            await ws.send(inbound.error(inbound.SOCKET_LIMIT, message).model_dump_json(exclude_none=True))
            await ws.close(CloseCode.POLICY_VIOLATION, inbound.SOCKET_LIMIT)
