"""`AgentryClient`: one WebSocket to the gateway, typed frames, resumption after a drop.

    async with AgentryClient(url, user="alice") as client:
        turn = await client.send("what is 37*91?")
        print(await turn.answer())

One task reads the socket and fans every frame out to the listeners (each `Turn` is one).
The client remembers the last `seq` of every conversation it follows; after a dropped
socket (or a 1013 close) it reconnects and sends `resume` from there, and it drops any
frame whose `seq` it already has, so a reader sees each frame once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agentry_shared.contracts.frames import (
    Approve,
    CancelTurn,
    ConversationList,
    ConversationSummary,
    ErrorFrame,
    ListConversations,
    Resume,
    SendMessage,
    ToolApprovalRequired,
)
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentry_client.errors import AgentryError, ConnectionLost, ServerError
from agentry_client.frames import Frame, parse_frame
from agentry_client.listener import Dropped, Ended, Listener
from agentry_client.turn import Turn

log = logging.getLogger("agentry_client")

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
# Close codes after which reconnecting cannot help: policy (1008), frame too big (1009),
# token expired or refused (4401: a new token is needed).
FINAL_CLOSE_CODES = frozenset({1008, 1009, 4401})
# Fields of `approve` filled by the client itself, not echoed from `tool.approval_required`.
_OWN_APPROVE_FIELDS = frozenset({"type", "approved", "id"})


def with_user(url: str, user: str | None) -> str:
    """The URL with the development identity (`?user=NAME`) set."""
    if not user:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "user"] + [("user", user)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def approve_frame(request: ToolApprovalRequired, approved: bool, *, id: str | None = None) -> Approve:
    """The `approve` answering `request`: it echoes every field of the request that `approve`
    has (`call_id` today; the fields that name the call exactly as the protocol grows)."""
    echoed = {
        name: value
        for name in Approve.model_fields
        if name not in _OWN_APPROVE_FIELDS and (value := getattr(request, name, None)) is not None
    }
    return Approve.model_validate({"type": "approve", "approved": approved, "id": id, **echoed})


class AgentryClient:
    """A typed async client of the WebSocket API (docs/protocol.md).

    `token` is a JWT sent as `Authorization: Bearer`; `user` the development identity.
    `on_reconnect(attempt)` is called after each successful reconnection.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        user: str | None = None,
        reconnect_attempts: int = 8,
        reconnect_delay: float = 0.25,
        on_reconnect: Callable[[int], None] | None = None,
    ) -> None:
        self.url = with_user(url, user)
        self.token = token
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self.on_reconnect = on_reconnect
        self.last_seq: dict[str, int] = {}
        self._resuming: set[str] = set()
        self._expired: set[str] = set()  # got `resume_gap`: the next seq may jump
        self._listeners: list[Listener] = []
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._ended: Ended | None = None
        self._closing = False

    # ---- lifecycle ------------------------------------------------------------------

    async def connect(self) -> AgentryClient:
        self._ws = await self._open()
        self._connected.set()
        self._reader = asyncio.create_task(self._read_loop(), name="agentry-client-reader")
        return self

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._end(Ended())

    async def __aenter__(self) -> AgentryClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def headers(self) -> dict[str, str]:
        """Headers of the upgrade request (asked again at each reconnection)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _open(self) -> ClientConnection:
        return await connect(self.url, additional_headers=self.headers(), max_size=16 * 2**20, open_timeout=10)

    # ---- what a caller does -----------------------------------------------------------

    async def send(self, text: str, conversation_id: str | None = None, *, id: str | None = None) -> Turn:
        """Post a user message; no `conversation_id` starts a new conversation. The returned
        `Turn` yields the frames of the turn the message starts (iterate it, or `answer()`)."""
        message = SendMessage(type="message", text=text, conversation_id=conversation_id, id=id or f"m-{uuid.uuid4()}")
        assert message.id is not None
        turn = Turn(self, self.listen(), message.id, conversation_id)
        try:
            await self._send(message, retry=False)
        except BaseException:
            turn.close()
            raise
        return turn

    async def ask(self, text: str, conversation_id: str | None = None) -> str:
        """Post a message and wait for the answer; raises `TurnFailed` or `ServerError`."""
        return await (await self.send(text, conversation_id)).answer()

    async def cancel(self, turn_id: str, *, id: str | None = None) -> None:
        """Ask to stop a turn: it ends with `turn.failed` code `cancelled` (no reply otherwise)."""
        await self._send(CancelTurn(type="cancel", turn_id=turn_id, id=id))

    async def approve(self, request: ToolApprovalRequired, approved: bool, *, id: str | None = None) -> None:
        """Answer a `tool.approval_required`, echoing every field of it that `approve` carries
        (`call_id`, and whatever identifies the call in later protocol versions)."""
        await self._send(approve_frame(request, approved, id=id))

    async def resume(self, conversation_id: str, after_seq: int | None = None, *, id: str | None = None) -> None:
        """Follow a conversation from `after_seq` (default: the last `seq` this client has)."""
        if after_seq is None:
            after_seq = self.last_seq.get(conversation_id, 0)
        else:
            self.last_seq[conversation_id] = after_seq  # frames after it are new to us again
        self._resuming.add(conversation_id)
        await self._send(Resume(type="resume", conversation_id=conversation_id, after_seq=after_seq, id=id))

    async def list_conversations(self, limit: int = 50, *, id: str | None = None) -> list[ConversationSummary]:
        """The user's conversations (at most `limit`, 1 to 200), the most recently active first:
        their ids for `send` or `resume`. Raises `ServerError` on a refusal (`unavailable`: try
        again). Asking changes nothing, so a request lost to a dropped socket is asked again."""
        request = ListConversations(type="list_conversations", limit=limit, id=id or f"l-{uuid.uuid4()}")
        with self.listen() as listener:
            await self._send(request)
            while True:
                item = await listener.get()
                if isinstance(item, Ended):
                    raise item.error or ConnectionLost("the client was closed before the list came")
                if isinstance(item, Dropped):
                    await self._send(request)
                elif isinstance(item, ConversationList) and item.id == request.id:
                    return item.conversations
                elif isinstance(item, ErrorFrame) and item.id == request.id:
                    raise ServerError(item)

    def listen(self) -> Listener:
        """A new subscriber to every frame read from now on (close it when done)."""
        listener = Listener(self._listeners.remove)
        if self._ended is not None:
            listener.put(self._ended)
        self._listeners.append(listener)
        return listener

    async def frames(self) -> AsyncIterator[Frame]:
        """Every frame read from now on, until the client closes (raises if it gave up)."""
        with self.listen() as listener:
            while True:
                item = await listener.get()
                if isinstance(item, Ended):
                    if item.error is not None:
                        raise item.error
                    return
                if not isinstance(item, Dropped):
                    yield item

    # ---- the socket -------------------------------------------------------------------

    async def _send(self, frame: BaseModel, *, retry: bool = True) -> None:
        """Send a client frame; waits while reconnecting. A `message` is not re-sent after a
        failed send (it may have arrived): that raises `ConnectionLost`."""
        data = frame.model_dump_json(exclude_none=True)
        while True:
            if self._ended is not None:
                raise self._ended.error or ConnectionLost("the client is closed")
            await self._connected.wait()
            assert self._ws is not None
            try:
                await self._ws.send(data)
                return
            except ConnectionClosed as closed:
                if not retry:
                    lost = "the connection dropped while sending: the message may not have arrived"
                    raise ConnectionLost(lost) from closed
                self._connected.clear()

    async def _read_loop(self) -> None:
        while True:
            assert self._ws is not None
            try:
                async for raw in self._ws:
                    self._on_raw(raw)
            except ConnectionClosed:
                pass
            code = self._ws.close_code
            self._connected.clear()
            if self._closing:
                return
            if code in FINAL_CLOSE_CODES:
                self._end(Ended(ConnectionLost(f"the gateway closed the connection ({code})")))
                return
            log.info("connection lost (close code %s): reconnecting", code)
            try:
                await self._reconnect()
            except AgentryError as error:
                self._end(Ended(error))
                return

    async def _reconnect(self) -> None:
        for attempt in range(1, self.reconnect_attempts + 1):
            await asyncio.sleep(self.reconnect_delay * attempt)
            try:
                self._ws = await self._open()
            except InvalidStatus as refused:
                if refused.response.status_code in (401, 403):
                    raise ConnectionLost(f"the gateway refused the identity ({refused.response.status_code})") from None
                continue
            except (OSError, InvalidHandshake, TimeoutError):
                continue
            self._broadcast(Dropped())
            for conversation_id, seq in list(self.last_seq.items()):
                self._resuming.add(conversation_id)
                resume = Resume(type="resume", conversation_id=conversation_id, after_seq=seq)
                await self._ws.send(resume.model_dump_json())
            self._connected.set()
            if self.on_reconnect is not None:
                self.on_reconnect(attempt)
            return
        raise ConnectionLost(f"could not reconnect to {self.url} after {self.reconnect_attempts} attempts")

    def _on_raw(self, raw: str | bytes) -> None:
        try:
            frame = parse_frame(raw)
        except ValueError:
            log.warning("ignored a frame that is not a server frame: %.200r", raw)
            return
        if isinstance(frame, ErrorFrame):
            if frame.code == "resume_required" and frame.conversation_id:
                self._resume_soon(frame.conversation_id)
            elif frame.code == "resume_gap" and frame.conversation_id:
                self._expired.add(frame.conversation_id)
        elif isinstance(frame, ConversationList):
            pass  # the answer to a `list_conversations`: no conversation's, no seq
        elif frame.conversation_id and frame.seq and not self._in_order(frame.conversation_id, frame.seq):
            return
        self._broadcast(frame)

    def _in_order(self, conversation_id: str, seq: int) -> bool:
        """Track the conversation's last seq; False for a frame already seen, or one past a
        gap (then resume from the last one we have: the missing frames come first). After a
        `resume_gap` the frames before the first kept one are gone: that jump is taken."""
        last = self.last_seq.get(conversation_id)
        if last is not None and seq <= last:
            return False
        if last is not None and seq > last + 1 and conversation_id not in self._expired:
            if conversation_id not in self._resuming:
                self._resume_soon(conversation_id)
            return False
        self.last_seq[conversation_id] = seq
        self._resuming.discard(conversation_id)
        self._expired.discard(conversation_id)
        return True

    def _resume_soon(self, conversation_id: str) -> None:
        self._resuming.add(conversation_id)
        resume = Resume(type="resume", conversation_id=conversation_id, after_seq=self.last_seq.get(conversation_id, 0))
        task = asyncio.get_running_loop().create_task(self._send(resume))
        task.add_done_callback(_log_failure)

    def _broadcast(self, item: Frame | Dropped) -> None:
        for listener in list(self._listeners):
            listener.put(item)

    def _end(self, ended: Ended) -> None:
        if self._ended is None:
            self._ended = ended
            for listener in list(self._listeners):
                listener.put(ended)
            # Wake every `_send` waiting for a connection that will not come: each sees the
            # end and raises (else a `cancel` sent while reconnecting waited for ever).
            self._connected.set()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("resume failed: %s", task.exception())
