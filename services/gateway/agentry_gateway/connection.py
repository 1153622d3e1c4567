"""One client socket: a reader that handles client frames, a writer that drains the
socket's own bounded queue, and the socket's replays (`resync`).

The reader and writer are separate tasks so a client that stops reading only stalls its
own writer, never the broker consumer shared by every socket; when its queue overflows,
the socket is closed with 1013 (try again later) and the client reconnects. Replays run
as tasks of their own, so a long one never delays the client's next frame (a cancel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from agentry_shared.contracts.frames import (
    Approve,
    CancelTurn,
    ClientFrame,
    ErrorFrame,
    ListConversations,
    Reauth,
    Resume,
    SendMessage,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import bind_context
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from agentry_gateway import approval, inbound, metrics
from agentry_gateway.auth import Identity
from agentry_gateway.authenticator import Authenticator, peer
from agentry_gateway.conversations import conversation_list
from agentry_gateway.expiry import TOKEN_EXPIRED, TOKEN_EXPIRED_CLOSE, Expiry
from agentry_gateway.fanout import Fanout
from agentry_gateway.inbound import FOLLOW_LIMIT, FORBIDDEN, INVALID_RESUME, NOT_FOUND, TURN_NOT_ACTIVE, Rejected
from agentry_gateway.intake import Intake
from agentry_gateway.memory_client import MemoryClient
from agentry_gateway.outbox import Offer, Outbox
from agentry_gateway.ratelimit import TokenBucket
from agentry_gateway.resync import Resync, Tuning

log = logging.getLogger(__name__)

# The close reason is all a slow client is told (at most 123 bytes): the limit, and what to do.
OVERFLOW_REASON = "fell GATEWAY_SEND_QUEUE_FRAMES frames behind reading: reconnect and resume from the last seq"
ACTIVE_STATES = frozenset({"queued", "running"})


@dataclass(frozen=True)
class Shared:
    """What every socket of the process uses."""

    limits: inbound.Limits
    frames_per_second: float
    send_queue_frames: int
    max_followed: int  # conversations one socket may follow (GATEWAY_MAX_FOLLOWED_CONVERSATIONS)
    fanout: Fanout
    intake: Intake
    memory: MemoryClient
    tuning: Tuning
    authenticator: Authenticator | None = None  # None: no token checks after the handshake


class ClientSession:
    def __init__(self, ws: ServerConnection, identity: Identity, shared: Shared) -> None:
        self._ws = ws
        self._identity = identity
        self._shared = shared
        self._outbox = Outbox(shared.send_queue_frames)
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._bucket = TokenBucket(shared.frames_per_second, 2 * shared.frames_per_second, self._clock())
        self._quiet_until = 0.0  # refused frames before this were told `rate_limited` already
        self._claimed: set[str] = set()
        self._subscribed: set[str] = set()
        self._closer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._expiry = Expiry(identity, shared.authenticator, self._token_expired)
        self._resync = Resync(self._outbox, shared.memory, self._scope, self._send_error, self._overflow, shared.tuning)

    async def run(self) -> None:
        metrics.CONNECTIONS.inc()
        writer = self._writer = asyncio.create_task(self._write_loop())
        log.debug("socket opened", extra={"user_id": self._identity.user_id})
        self._expiry.start()
        try:
            await self._read_loop()
        finally:
            self._expiry.stop()
            writer.cancel()
            await self._resync.close()
            for conversation_id in self._subscribed:
                await self._shared.fanout.unsubscribe(conversation_id, self)
            await asyncio.gather(writer, return_exceptions=True)
            metrics.CONNECTIONS.dec()
            log.debug("socket closed", extra={"user_id": self._identity.user_id, "code": self._ws.close_code})

    # ---- broker -> client -----------------------------------------------------------

    def deliver(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> None:
        if self._closer is not None or self._resync.intercept(conversation_id, seq, frame_type, body):
            return
        if self._outbox.offer_frame(conversation_id, seq, frame_type, body) is Offer.OVERFLOW:
            self._overflow()

    def broker_lost(self) -> None:
        """Frames published from now until `broker_back` never reach us: hold and remember where we were."""
        self._resync.pause(self._subscribed)

    def broker_back(self) -> None:
        self._resync.catch_up()

    def _overflow(self) -> None:
        if self._closer is not None:
            return
        metrics.SLOW_CONSUMER_DISCONNECTS.inc()
        log.warning("slow consumer disconnected", extra={"user_id": self._identity.user_id})
        self._closer = asyncio.create_task(self._ws.close(CloseCode.TRY_AGAIN_LATER, OVERFLOW_REASON))

    def _token_expired(self) -> None:
        """exp passed with no reauth: a last `token_expired` frame, then close 4401."""
        if self._closer is not None:
            return
        log.info("token expired: closing the socket", extra={"user_id": self._identity.user_id})
        self._closer = asyncio.create_task(self._close_expired())

    async def _close_expired(self) -> None:
        if self._writer is not None:  # so nothing queued goes out after the last frame
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        frame = inbound.error(TOKEN_EXPIRED, "the token expired: reconnect with a fresh one")
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(frame.model_dump_json(exclude_none=True))
            metrics.FRAMES_SENT.labels("error").inc()
        await self._ws.close(TOKEN_EXPIRED_CLOSE, "token expired")

    async def _write_loop(self) -> None:
        try:
            while True:
                frame_type, body = await self._outbox.get()
                await self._ws.send(body, text=True)  # live frames as received from the broker
                metrics.FRAMES_SENT.labels(frame_type).inc()
        except ConnectionClosed:
            return

    # ---- client -> broker -----------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._ws.recv()
                try:
                    await self._handle(data)
                except ConnectionClosed:
                    raise
                except Exception:
                    # A bug must cost the frame, not the socket (and not a traceback per frame).
                    log.exception("client frame handling failed", extra={"throttle_key": self._identity.user_id})
                    self._refuse(inbound.error(inbound.INTERNAL, "the gateway failed on this frame; it was not done"))
        except ConnectionClosed:
            return

    async def _handle(self, data: str | bytes) -> None:
        now = self._clock()
        if not self._bucket.allow(now):
            self._rate_limited(now)
            return
        frame = inbound.parse(data, self._shared.limits)
        if isinstance(frame, ErrorFrame):
            self._refuse(frame)
            return
        await self._dispatch(frame)

    async def _dispatch(self, frame: ClientFrame) -> None:
        """One branch per client frame type."""
        match frame:
            case SendMessage():
                await self._on_message(frame)
            case CancelTurn():
                await self._on_cancel(frame)
            case Resume():
                await self._on_resume(frame)
            case Approve():
                await self._on_approve(frame)
            case Reauth():
                await self._on_reauth(frame)
            case ListConversations():
                await self._on_list_conversations(frame)

    def _scope(self, conversation_id: str) -> Scope:
        return Scope(
            tenant_id=self._identity.tenant_id, user_id=self._identity.user_id, conversation_id=conversation_id
        )

    async def _on_message(self, frame: SendMessage) -> None:
        """Without `conversation_id` a new conversation starts, its id issued here; a client
        can only name one that exists (memory answers `not_found` and creates nothing)."""
        new = frame.conversation_id is None
        conversation_id = frame.conversation_id or uuid.uuid4().hex
        scope = self._scope(conversation_id)
        try:
            with bind_context(conversation_id=conversation_id):
                await self._claim(scope, new=new)
                await self._subscribe(conversation_id)
                if self._ws.state is not State.OPEN:
                    # The client left while we claimed: it never saw an acceptance and will
                    # resend, so publishing now would only make a duplicate turn.
                    return
                await self._shared.intake.publish(scope, frame.text, frame.id)
        except Rejected as exc:
            known = frame.conversation_id
            if new and conversation_id in self._claimed and not await self._abandon(scope):
                known = conversation_id  # it stays: the client can retry in it
            self._refuse(
                inbound.error(exc.code, exc.message, id=frame.id, conversation_id=known, retry_after=exc.retry_after)
            )
            return
        metrics.CLIENT_FRAMES.labels("accepted").inc()

    async def _abandon(self, scope: Scope) -> bool:
        """The conversation created for a first message that was then refused (over a turn
        budget, `unavailable`) goes again, or each retry would leave an empty one counting
        toward MEMORY_MAX_CONVERSATIONS_PER_USER. Its id was issued to no one but this
        socket, so nothing else can be using it. False: memory kept it (a turn is in it: the
        publish went through after all) or did not answer."""
        conversation_id = scope.conversation_id
        try:
            with bind_context(conversation_id=conversation_id):
                removed = await self._shared.memory.abandon(scope)
        except Rejected:
            log.warning("a refused message's new conversation could not be abandoned", exc_info=True)
            return False
        if removed:
            await self._unfollow(conversation_id)
        return removed

    async def _unfollow(self, conversation_id: str) -> None:
        """Give back the follow slot (GATEWAY_MAX_FOLLOWED_CONVERSATIONS) of a conversation
        this socket took it for by a frame that was then refused."""
        self._claimed.discard(conversation_id)
        self._outbox.reset(conversation_id, None)
        if conversation_id in self._subscribed:
            self._subscribed.discard(conversation_id)
            await self._shared.fanout.unsubscribe(conversation_id, self)

    async def _on_cancel(self, frame: CancelTurn) -> None:
        """Memory decides and tells the reasoners; the turn then ends with `turn.failed`
        (code `cancelled`) through the conversation's normal stream."""
        identity = self._identity
        try:
            with bind_context(turn_id=frame.turn_id):
                accepted = await self._shared.memory.cancel(identity.tenant_id, identity.user_id, frame.turn_id)
        except Rejected as exc:
            message = {NOT_FOUND: "no such turn", FORBIDDEN: "this turn belongs to another user"}.get(exc.code)
            self._refuse(inbound.error(exc.code, message or exc.message, id=frame.id))
            return
        if accepted.state not in ACTIVE_STATES:
            message = f"the turn is already {accepted.state}: nothing to cancel"
            self._refuse(inbound.error(TURN_NOT_ACTIVE, message, id=frame.id, conversation_id=accepted.conversation_id))
            return
        metrics.CLIENT_FRAMES.labels("accepted").inc()

    async def _on_approve(self, frame: Approve) -> None:
        """Memory records the decision and tells the waiting reasoner; the turn then goes on
        through the conversation's normal stream. Only refusals are answered (`approval`)."""
        identity = self._identity
        try:
            with bind_context(conversation_id=frame.conversation_id, turn_id=frame.turn_id, call_id=frame.call_id):
                reply = await self._shared.memory.decide(identity.tenant_id, identity.user_id, frame)
        except Rejected as exc:
            message = {
                NOT_FOUND: "no such tool call of this turn awaits approval",
                FORBIDDEN: "this call belongs to another user",
            }
            self._refuse(
                inbound.error(
                    exc.code, message.get(exc.code, exc.message), id=frame.id, conversation_id=frame.conversation_id
                )
            )
            return
        refused = approval.refusal(frame, reply)
        if refused is not None:
            self._refuse(inbound.error(*refused, id=frame.id, conversation_id=reply.conversation_id))
            return
        metrics.CLIENT_FRAMES.labels("accepted").inc()

    async def _on_reauth(self, frame: Reauth) -> None:
        """A fresh token moves the socket's expiry; a refusal leaves it where it was."""
        refusal = await self._expiry.reauth(frame, peer(self._ws.remote_address))
        if refusal is not None:
            self._refuse(refusal)
            return
        metrics.CLIENT_FRAMES.labels("accepted").inc()

    async def _on_list_conversations(self, frame: ListConversations) -> None:
        try:
            answer = await conversation_list(self._shared.memory, self._identity, frame)
        except Rejected as exc:
            self._refuse(inbound.error(exc.code, exc.message, id=frame.id))
            return
        metrics.CLIENT_FRAMES.labels("accepted").inc()
        if (
            self._closer is None
            and self._outbox.offer_reply(answer.type, answer.model_dump_json().encode()) is Offer.OVERFLOW
        ):
            self._overflow()

    async def _on_resume(self, frame: Resume) -> None:
        """Claim, hold live frames, subscribe, then replay in a task of its own (`resync`).
        A refused resume of a conversation not followed before gives its follow slot back."""
        conversation_id = frame.conversation_id
        followed = conversation_id in self._claimed
        try:
            with bind_context(conversation_id=conversation_id):
                await self._claim(self._scope(conversation_id))
                await self._check_cursor(self._scope(conversation_id), frame.after_seq)
                self._resync.resume(conversation_id, frame.after_seq, frame.id)
                try:
                    await self._subscribe(conversation_id)
                except Rejected:
                    self._resync.abandon(conversation_id)
                    raise
        except Rejected as exc:
            if not followed:
                await self._unfollow(conversation_id)
            self._refuse(inbound.error(exc.code, exc.message, id=frame.id, conversation_id=conversation_id))
            return
        self._resync.start(conversation_id)
        metrics.CLIENT_FRAMES.labels("accepted").inc()

    async def _check_cursor(self, scope: Scope, after_seq: int) -> None:
        """Refuse an `after_seq` the conversation never reached: the socket would take every
        frame up to it for already sent and drop them, the `message.accepted` of the
        client's next message too. Memory keeps a conversation's last frame, so there is a
        frame from `after_seq` on unless the conversation ends before it."""
        if after_seq > 0 and not await self._shared.memory.frames(scope, after_seq - 1, 1):
            message = (
                f"after_seq {after_seq} is beyond the conversation's last seq: send the last seq you have (0: all)"
            )
            raise Rejected(INVALID_RESUME, message)

    async def _claim(self, scope: Scope, *, new: bool = False) -> None:
        conversation_id = scope.conversation_id
        if conversation_id in self._claimed:
            return
        limit = self._shared.max_followed
        if len(self._claimed) >= limit:  # every followed conversation was claimed first
            message = f"this socket follows GATEWAY_MAX_FOLLOWED_CONVERSATIONS ({limit}) conversations; open another"
            raise Rejected(FOLLOW_LIMIT, message)
        created = await self._shared.memory.claim(scope, new=new)
        self._claimed.add(conversation_id)
        if created and self._outbox.last_seq(conversation_id) is None:
            # A new conversation: this socket has seen all of it (nothing), so a catch-up
            # after a broker outage knows to start at the beginning.
            self._outbox.reset(conversation_id, 0)

    async def _subscribe(self, conversation_id: str) -> None:
        """Before publishing, so not even the first frame of the turn can be missed."""
        if conversation_id in self._subscribed:
            return
        try:
            await self._shared.fanout.subscribe(conversation_id, self)
        except Exception as exc:
            log.warning("subscribe failed", extra={"conversation_id": conversation_id}, exc_info=True)
            raise Rejected(inbound.UNAVAILABLE, "the broker is unavailable; retry") from exc
        self._subscribed.add(conversation_id)

    def _rate_limited(self, now: float) -> None:
        """One `rate_limited` per window, saying when a frame will be taken again; the other
        refused frames of the window are dropped unanswered: answering each would fill the
        send queue and close the socket (1013), which is what the limit is meant to avoid."""
        if now < self._quiet_until:
            metrics.CLIENT_FRAMES.labels("rate_limited_silently").inc()
            return
        wait = self._bucket.retry_after(now)
        self._quiet_until = now + wait
        rate = self._shared.frames_per_second
        message = f"over GATEWAY_MAX_FRAMES_PER_SECOND ({rate:g}/s); frames sent before retry_after_ms are dropped"
        self._refuse(inbound.error(inbound.RATE_LIMITED, message, retry_after=wait))

    def _refuse(self, frame: ErrorFrame) -> None:
        """Answer a client frame with an error."""
        metrics.CLIENT_FRAMES.labels(frame.code).inc()
        self._send_error(frame)

    def _send_error(self, frame: ErrorFrame) -> None:
        if self._closer is not None:
            return
        try:
            body = frame.model_dump_json(exclude_none=True).encode()
        except ValueError:  # an unencodable echo (inbound refuses lone surrogates; this is the backstop)
            log.warning("error frame not encodable; sent without echoes", extra={"throttle_key": frame.code})
            plain = frame.message.encode(errors="replace").decode()
            body = ErrorFrame(code=frame.code, message=plain).model_dump_json(exclude_none=True).encode()
        if self._outbox.offer_error(body) is Offer.OVERFLOW:
            self._overflow()
