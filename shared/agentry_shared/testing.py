"""Stand-ins for the services' own tests (and the benchmarks): imported by tests only,
never by a service.

- `CuttableProxy`: a TCP relay to the broker a test can cut (a broker outage, as one
  client sees it).
- `MemoryStandIn`: the memory service's RPC on the real broker, answered from dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aio_pika.abc import AbstractChannel
from pydantic import BaseModel

from agentry_shared.bus import Bus, Consumer, encode
from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import (
    MEMORY_REQUEST,
    AbandonConversation,
    Abandoned,
    AdmitTurn,
    Approval,
    ApprovalState,
    CancelTurnRequest,
    ClaimConversation,
    Claimed,
    ClaimToolCall,
    CompleteToolCall,
    DecideApproval,
    Done,
    Frames,
    GetApproval,
    GetFrames,
    MemoryFailure,
    MemoryRequest,
    RequestApproval,
    ToolCallClaimed,
    TurnAdmission,
    TurnCancelAccepted,
    TurnState,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import ToolCompleted
from agentry_shared.topology import Topology

NO_ARGUMENTS = arguments_sha256({})  # the digest of a stored approval's (empty) arguments


async def delete_declared(channel: AbstractChannel, topology: Topology) -> None:
    """Delete a test namespace's shared queues and exchanges: tests share one broker and
    leave nothing of theirs on it."""
    for name in topology.durable_queues([]):
        await channel.queue_delete(name)
    for name in topology.exchanges():
        await channel.exchange_delete(name)


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Waits for the state a test goes on from, instead of sleeping a guessed time: on a
    loaded machine the wait only grows, the test does not turn false."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.01)


class CuttableProxy:
    """A TCP relay to the broker: `cut` drops every connection through it and refuses new
    ones until `mend`, which is what a broker restart looks like from the client. One
    service's connection is lost without touching the broker other tests use."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    def cut(self) -> None:
        self.down = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# ---- the memory service's RPC, from dicts -----------------------------------------------


@dataclass
class StoredApproval:
    """A tool call's approval as the memory stand-in keeps it."""

    conversation_id: str
    turn_id: str
    user_id: str
    state: ApprovalState = "pending"
    tenant_id: str = "default"
    args_sha256: str = NO_ARGUMENTS


@dataclass
class StandInClaim:
    """A tool call's claim as the memory stand-in keeps it."""

    state: str  # "running" | "done"
    since: float  # time.monotonic() of the claim
    result: dict[str, Any] | None = None


class MemoryStandIn:
    """Stands in for the memory service on its RPC queue of the real broker (dicts, no store).

    It answers what the gateway and the tool-runner ask of memory; anything else is
    `MemoryFailure(code="invalid")`. What the real memory service does is its own business
    (its own tests); this is the contract the callers rely on:

    - ClaimConversation: `new` creates the conversation for the claiming (tenant, user)
      (`owners`); otherwise an unknown one is `not_found` and another user's `forbidden`.
    - AbandonConversation: forgets an owner's conversation unless it has `frames` (kept:
      `removed=False`).
    - AdmitTurn: admits every turn, but answers a user in `admissions` with what is there
      (a refusal over a budget, or a failure).
    - GetFrames: serves `frames[conversation][seq]` to the owner; `while_answering` (a
      test's hook) runs after the page is read and before it is sent, so a test can make
      the conversation go on during a replay.
    - CancelTurnRequest: answers from `turns[turn_id] = (conversation, state, user)`.
    - DecideApproval: from `approvals[call_id]` (see `store_approval`): a `pending` call
      takes the decision, any other state is kept and answered as it is (first decision
      wins; `expired` stays expired). Unknown call, or one of another turn or conversation
      than named: `not_found`; another user's: `forbidden`; no turn_id or args_sha256:
      `invalid`. Another digest: nothing is recorded, the reply carries the kept one.
    - RequestApproval: keeps a pending approval with its arguments' digest; asking
      again (whatever the arguments) keeps the first, as memory does.
    - GetApproval: the call's state and kept digest, read as the reasoner reads them;
      `pending` without a digest for a call never asked (or of another turn).
    - ClaimToolCall / CompleteToolCall: tool-call claims in `claims` (see `seed`, `kept`):
      the first claim and the first result win.

    Every request is kept in `requests`. Requests about a conversation, turn or call in
    `late` are answered `late_by` seconds late, as an overloaded memory service would;
    with `silent` set nothing is answered at all, as a memory service that is down.
    """

    def __init__(self, bus: Bus, *, late_by: float = 1.5) -> None:
        self.bus = bus
        self.late_by = late_by
        self.silent = False
        self.late: set[str] = set()
        self.requests: list[MemoryRequest] = []
        self.owners: dict[str, tuple[str, str]] = {}
        self.frames: dict[str, dict[int, dict[str, Any]]] = {}
        self.turns: dict[str, tuple[str, TurnState, str]] = {}
        self.approvals: dict[str, StoredApproval] = {}
        self.claims: dict[tuple[str, str], StandInClaim] = {}
        self.admissions: dict[str, TurnAdmission | MemoryFailure] = {}  # user_id -> AdmitTurn's answer
        self.while_answering: Callable[[GetFrames], Awaitable[None]] | None = None
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        """Consume the memory RPC queue of the bus's namespace."""
        self._consumer = await self.bus.serve_rpc(self.bus.topology.memory_rpc, self.answer)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None

    # ---- seeding and reading back ----------------------------------------------------

    def store_approval(
        self, call_id: str, user_id: str, conversation_id: str, state: ApprovalState = "pending"
    ) -> StoredApproval:
        """A tool call of `turn-<call_id>` that asked `user_id` for approval (no arguments:
        its digest is `NO_ARGUMENTS`)."""
        record = StoredApproval(conversation_id, f"turn-{call_id}", user_id, state)
        self.approvals[call_id] = record
        return record

    def seed(
        self, turn_id: str, call_id: str, state: str, age: float = 0.0, result: ToolCompleted | None = None
    ) -> None:
        """A tool call claimed `age` seconds ago, `running` or `done` (with its result)."""
        kept = result.model_dump() if result is not None else None
        self.claims[(turn_id, call_id)] = StandInClaim(state, time.monotonic() - age, kept)

    def kept(self, turn_id: str, call_id: str) -> ToolCompleted | None:
        """The result kept for a tool call, if it is done."""
        claim = self.claims.get((turn_id, call_id))
        if claim is None or claim.state != "done":
            return None
        return ToolCompleted.model_validate(claim.result)

    def requests_of(self, kind: type[Any]) -> list[Any]:
        return [request for request in self.requests if isinstance(request, kind)]

    # ---- answering -------------------------------------------------------------------

    async def answer(self, body: bytes) -> bytes:
        if self.silent:
            raise RuntimeError("memory stand-in is silent")  # serve_rpc drops it unanswered
        request = MEMORY_REQUEST.validate_json(body)
        self.requests.append(request)
        if self._key(request) in self.late:
            await asyncio.sleep(self.late_by)
        if isinstance(request, GetFrames):
            return encode(await self._frames(request))
        return encode(self._reply(request))

    def _reply(self, request: MemoryRequest) -> BaseModel:
        handlers: dict[type[Any], Callable[[Any], BaseModel]] = {
            ClaimConversation: self._claim_conversation,
            AbandonConversation: self._abandon_conversation,
            AdmitTurn: self._admit_turn,
            CancelTurnRequest: self._cancel,
            DecideApproval: self._decide,
            RequestApproval: self._request_approval,
            GetApproval: self._approval,
            ClaimToolCall: self._claim_tool_call,
            CompleteToolCall: self._complete_tool_call,
        }
        handler = handlers.get(type(request))
        if handler is None:
            return MemoryFailure(code="invalid", message=f"the stand-in does not answer {request.kind}")
        return handler(request)

    @staticmethod
    def _key(request: MemoryRequest) -> str | None:
        """What `late` is matched against: the call, the turn, else the conversation."""
        for field in ("call_id", "turn_id"):
            if isinstance(value := getattr(request, field, None), str):
                return value
        scope = getattr(request, "scope", None)
        return scope.conversation_id if isinstance(scope, Scope) else None

    def _owned_by_another(self, scope: Scope) -> bool:
        mine = (scope.tenant_id, scope.user_id)
        return self.owners.get(scope.conversation_id, mine) != mine

    def _claim_conversation(self, request: ClaimConversation) -> Claimed | MemoryFailure:
        scope = request.scope
        created = scope.conversation_id not in self.owners
        if created and not request.new:
            return MemoryFailure(code="not_found", message=f"no conversation {scope.conversation_id}")
        self.owners.setdefault(scope.conversation_id, (scope.tenant_id, scope.user_id))
        if self._owned_by_another(scope):
            return MemoryFailure(code="forbidden", message="not yours")
        return Claimed(created=created)

    def _abandon_conversation(self, request: AbandonConversation) -> Abandoned | MemoryFailure:
        scope = request.scope
        if self._owned_by_another(scope):
            return MemoryFailure(code="forbidden", message="not yours")
        if self.frames.get(scope.conversation_id):
            return Abandoned(removed=False)
        self.owners.pop(scope.conversation_id, None)
        return Abandoned(removed=True)

    def _admit_turn(self, request: AdmitTurn) -> TurnAdmission | MemoryFailure:
        return self.admissions.get(request.scope.user_id, TurnAdmission(allowed=True))

    async def _frames(self, request: GetFrames) -> Frames | MemoryFailure:
        if self._owned_by_another(request.scope):
            return MemoryFailure(code="forbidden", message="not yours")
        stored = self.frames.get(request.scope.conversation_id, {})
        after = sorted(seq for seq in stored if seq > request.after_seq)[: request.limit]
        page = Frames(frames=[stored[seq] for seq in after])
        if self.while_answering is not None:
            await self.while_answering(request)
        return page

    def _cancel(self, request: CancelTurnRequest) -> TurnCancelAccepted | MemoryFailure:
        turn = self.turns.get(request.turn_id)
        if turn is None:
            return MemoryFailure(code="not_found", message="no such turn")
        conversation_id, state, user_id = turn
        if user_id != request.user_id:
            return MemoryFailure(code="forbidden", message="not yours")
        return TurnCancelAccepted(conversation_id=conversation_id, state=state)

    def _decide(self, request: DecideApproval) -> Approval | MemoryFailure:
        if request.turn_id is None or request.args_sha256 is None:
            return MemoryFailure(code="invalid", message="decide_approval needs turn_id and args_sha256")
        pending = self.approvals.get(request.call_id)
        if pending is None or pending.turn_id != request.turn_id:
            return MemoryFailure(code="not_found", message="no such approval")
        if request.conversation_id not in (None, pending.conversation_id):
            return MemoryFailure(code="not_found", message="no such approval in this conversation")
        if (pending.tenant_id, pending.user_id) != (request.tenant_id, request.user_id):
            return MemoryFailure(code="forbidden", message="not yours")
        if pending.state == "pending" and pending.args_sha256 == request.args_sha256:
            pending.state = "approved" if request.approved else "denied"
        return Approval(
            conversation_id=pending.conversation_id,
            turn_id=pending.turn_id,
            call_id=request.call_id,
            state=pending.state,
            args_sha256=pending.args_sha256,
        )

    def _request_approval(self, request: RequestApproval) -> Done:
        scope, digest = request.scope, arguments_sha256(request.arguments)
        kept = StoredApproval(scope.conversation_id, request.turn_id, scope.user_id, tenant_id=scope.tenant_id)
        kept.args_sha256 = digest
        self.approvals.setdefault(request.call_id, kept)
        return Done()

    def _approval(self, request: GetApproval) -> Approval:
        kept = self.approvals.get(request.call_id)
        found = kept is not None and kept.turn_id == request.turn_id
        return Approval(
            conversation_id=request.scope.conversation_id,
            turn_id=request.turn_id,
            call_id=request.call_id,
            state=kept.state if kept is not None and found else "pending",
            args_sha256=kept.args_sha256 if kept is not None and found else None,
        )

    def _claim_tool_call(self, request: ClaimToolCall) -> ToolCallClaimed:
        key = (request.turn_id, request.call_id)
        claim = self.claims.get(key)
        if claim is None:
            self.claims[key] = StandInClaim("running", time.monotonic())
            return ToolCallClaimed(state="new")
        age = time.monotonic() - claim.since
        state: Literal["running", "done"] = "done" if claim.state == "done" else "running"
        return ToolCallClaimed(state=state, claimed_seconds_ago=age, result=claim.result)

    def _complete_tool_call(self, request: CompleteToolCall) -> Done:
        key = (request.turn_id, request.call_id)
        claim = self.claims.get(key)
        if claim is None or claim.state != "done":  # as memory does: the first result is kept
            self.claims[key] = StandInClaim("done", claim.since if claim else time.monotonic(), request.result)
        return Done()
