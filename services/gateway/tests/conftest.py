"""Real RabbitMQ, real sockets: one namespace per test run, deleted at the end.

The memory service is not part of these tests: `MemoryStandIn` answers the gateway's
memory RPCs (claim, get frames, cancel, decide approval) from dicts, and `LogTap` consumes the log queues
the way memory would, so a test sees exactly the TurnRequested messages the gateway
published. `BrokerProxy` is a TCP relay to the broker that a test can cut, to show a
gateway a broker outage without touching the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest_asyncio
from agentry_gateway.server import Gateway
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    Approval,
    ApprovalState,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    DecideApproval,
    Frames,
    GetFrames,
    MemoryFailure,
    MemoryRequest,
    TurnCancelAccepted,
    TurnState,
)
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.settings import GatewaySettings
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PARTITIONS = 4
CLAIM_TIMEOUT = 0.5


@dataclass
class StoredApproval:
    """A tool call's approval as the memory stand-in keeps it."""

    conversation_id: str
    turn_id: str
    user_id: str
    state: ApprovalState = "pending"
    tenant_id: str = "default"


class MemoryStandIn:
    """Stands in for the memory service in gateway tests (not the real one: dicts, no store).

    - ClaimConversation: the first user to claim a conversation owns it.
    - GetFrames: serves `frames[conversation][seq]` (what `Broker.send_frame` stored), as
      memory does; `while_answering` (a test's hook) runs after the page is read and before
      it is sent, so a test can make the conversation go on during a replay.
    - CancelTurnRequest: answers from `turns[turn_id] = (conversation, state, user)`.
    - DecideApproval: from `approvals[call_id]` (a `StoredApproval`):
      a `pending` call takes the decision, any other state is kept and answered as it is
      (first decision wins; `expired` stays expired). Unknown call: `not_found`; another
      user's: `forbidden`. (What the real memory service does is its own business; this is
      the contract the gateway relies on.)

    Every request is kept in `requests`. Conversations, turns and calls in `silent` are
    answered too late, as a memory service that is down or overloaded would.
    """

    def __init__(self) -> None:
        self.owners: dict[str, tuple[str, str]] = {}
        self.silent: set[str] = set()
        self.frames: dict[str, dict[int, dict[str, Any]]] = {}
        self.turns: dict[str, tuple[str, TurnState, str]] = {}
        self.approvals: dict[str, StoredApproval] = {}
        self.requests: list[MemoryRequest] = []
        self.while_answering: Callable[[GetFrames], Awaitable[None]] | None = None

    async def handle(self, body: bytes) -> bytes:
        request = MEMORY_REQUEST.validate_json(body)
        self.requests.append(request)
        if isinstance(request, CancelTurnRequest):
            key = request.turn_id
        elif isinstance(request, DecideApproval):
            key = request.call_id
        else:
            assert isinstance(request, ClaimConversation | GetFrames), request
            key = request.scope.conversation_id
        if key in self.silent:
            await asyncio.sleep(CLAIM_TIMEOUT * 3)
        if isinstance(request, CancelTurnRequest):
            return encode(self._cancel(request))
        if isinstance(request, DecideApproval):
            return encode(self._decide(request))
        assert isinstance(request, ClaimConversation | GetFrames), request
        scope = request.scope
        if isinstance(request, GetFrames):
            if self.owners.get(scope.conversation_id, (scope.tenant_id, scope.user_id)) != (
                scope.tenant_id,
                scope.user_id,
            ):
                return encode(MemoryFailure(code="forbidden", message="not yours"))
            stored = self.frames.get(scope.conversation_id, {})
            after = sorted(seq for seq in stored if seq > request.after_seq)[: request.limit]
            page = Frames(frames=[stored[seq] for seq in after])
            if self.while_answering is not None:
                await self.while_answering(request)
            return encode(page)
        created = scope.conversation_id not in self.owners
        owner = self.owners.setdefault(scope.conversation_id, (scope.tenant_id, scope.user_id))
        if owner != (scope.tenant_id, scope.user_id):
            return encode(MemoryFailure(code="forbidden", message="not yours"))
        return encode(Claimed(created=created))

    def _cancel(self, request: CancelTurnRequest) -> TurnCancelAccepted | MemoryFailure:
        turn = self.turns.get(request.turn_id)
        if turn is None:
            return MemoryFailure(code="not_found", message="no such turn")
        conversation_id, state, user_id = turn
        if user_id != request.user_id:
            return MemoryFailure(code="forbidden", message="not yours")
        return TurnCancelAccepted(conversation_id=conversation_id, state=state)

    def _decide(self, request: DecideApproval) -> Approval | MemoryFailure:
        pending = self.approvals.get(request.call_id)
        if pending is None:
            return MemoryFailure(code="not_found", message="no such approval")
        if (pending.tenant_id, pending.user_id) != (request.tenant_id, request.user_id):
            return MemoryFailure(code="forbidden", message="not yours")
        if pending.state == "pending":
            pending.state = "approved" if request.approved else "denied"
        conversation_id, turn_id = pending.conversation_id, pending.turn_id
        return Approval(conversation_id=conversation_id, turn_id=turn_id, call_id=request.call_id, state=pending.state)

    def store_approval(
        self, call_id: str, user_id: str, conversation_id: str, state: ApprovalState = "pending"
    ) -> StoredApproval:
        """A tool call of `turn-<call_id>` that asked `user_id` for approval."""
        record = StoredApproval(conversation_id, f"turn-{call_id}", user_id, state)
        self.approvals[call_id] = record
        return record

    def requests_of(self, kind: type[Any]) -> list[Any]:
        return [request for request in self.requests if isinstance(request, kind)]


class LogTap:
    """Consumes every log partition (as the memory service would) into one queue."""

    def __init__(self) -> None:
        self.turns: asyncio.Queue[TurnRequested] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.turns.put_nowait(TurnRequested.model_validate_json(message.body))

    async def next(self, timeout: float = 5.0) -> TurnRequested:
        return await asyncio.wait_for(self.turns.get(), timeout)

    def empty(self) -> bool:
        return self.turns.empty()


@dataclass
class Broker:
    bus: Bus
    channel: AbstractRobustChannel
    memory: MemoryStandIn
    log: LogTap

    @property
    def topology(self) -> Topology:
        return self.bus.topology

    async def send_frame(
        self,
        conversation_id: str,
        seq: int,
        frame_type: str = "message.delta",
        *,
        store: bool = True,
        publish: bool = True,
        **extra: Any,
    ) -> None:
        """Store a server frame in the memory stand-in, then publish it, as the memory service does.

        `publish=False` is a frame that a gateway never received (lost in an outage).
        """
        body = {"type": frame_type, "conversation_id": conversation_id, "seq": seq, **extra}
        if store:
            self.memory.frames.setdefault(conversation_id, {})[seq] = body
        if publish:
            # Transient and not mandatory, as frames are: a frame nobody follows is dropped.
            await self.bus.publish(
                self.topology.frames_exchange, conversation_id, json.dumps(body).encode(), persistent=False
            )


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def broker() -> AsyncIterator[Broker]:
    topology = Topology(f"t{uuid.uuid4().hex}", PARTITIONS)
    bus = Bus(AMQP_URL, topology, name="gateway-tests")
    await bus.connect()
    channel = await bus.channel(prefetch=64)
    memory, log = MemoryStandIn(), LogTap()
    try:
        await bus.serve_rpc(topology.memory_rpc_queue, memory.handle)
        for partition in range(PARTITIONS):
            queue = await bus.declare_work_queue(
                channel, topology.log_queue(partition), topology.log_exchange, str(partition), single_active=True
            )
            await queue.consume(log.on_message)
        yield Broker(bus, channel, memory, log)
    finally:
        await bus.close()
        async with await aio_pika.connect(AMQP_URL) as connection:
            cleanup = await connection.channel()
            for name in topology.durable_queues([]):
                await cleanup.queue_delete(name)
            for name in topology.exchanges():
                await cleanup.exchange_delete(name)


StartGateway = Callable[..., Awaitable[tuple[Gateway, str]]]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def start_gateway(broker: Broker) -> AsyncIterator[StartGateway]:
    """Start an in-process gateway (own bus, as its own process would have); returns it and its ws URL.

    Keyword arguments are settings, plus `memory_timeout`, `publish_timeout`, `replay_page`,
    `outage_retry_seconds` (Gateway's), `amqp_url`, and `connect=False` to leave connecting to the gateway.
    """
    started: list[Gateway] = []

    async def start(**overrides: Any) -> tuple[Gateway, str]:
        values: dict[str, Any] = {
            "agentry_namespace": broker.topology.namespace,
            "agentry_partitions": PARTITIONS,
            "gateway_port": 0,
            "gateway_max_frame_bytes": 4096,
            "gateway_max_text_chars": 1000,
            "gateway_max_frames_per_second": 1000.0,
            "shutdown_grace_seconds": 5.0,
            "auth_jwt_secret": None,
            "auth_jwt_audience": None,
            **overrides,
        }
        gateway_options = {"memory_timeout": CLAIM_TIMEOUT, "publish_timeout": 2.0}
        for name in ("memory_timeout", "publish_timeout", "replay_page", "outage_retry_seconds"):
            if name in values:
                gateway_options[name] = values.pop(name)
        amqp_url, connect = values.pop("amqp_url", AMQP_URL), values.pop("connect", True)
        settings = GatewaySettings(**values)
        bus = Bus(amqp_url, broker.topology, name="gateway-under-test")
        if connect:  # else the gateway connects by itself, in the background
            await bus.connect()
        gateway = Gateway(settings, bus, **gateway_options)
        port = await gateway.start()
        started.append(gateway)
        return gateway, f"ws://127.0.0.1:{port}/ws"

    yield start
    for gateway in started:
        await gateway.stop(2.0)
        await gateway.bus.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gateway(start_gateway: StartGateway) -> tuple[Gateway, str]:
    """The default gateway most tests share (development auth)."""
    return await start_gateway()


class BrokerProxy:
    """A TCP relay on a free local port to the broker: `stop()` cuts every connection through
    it and refuses new ones (a broker outage, as the gateway sees it); `start()` ends it.

    The broker sees the cut as the client going away, so it deletes that connection's
    exclusive queues, exactly as when the broker itself restarts.
    """

    def __init__(self, target_port: int = 5672) -> None:
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/?reconnect_interval=0.3"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in tuple(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, broker_writer))
        for reader, writer in ((client_reader, broker_writer), (broker_reader, client_writer)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest_asyncio.fixture(loop_scope="session")
async def broker_proxy() -> AsyncIterator[BrokerProxy]:
    """A proxy that is NOT started: nothing listens on its port until the test says so."""
    proxy = BrokerProxy()
    yield proxy
    await proxy.stop()
