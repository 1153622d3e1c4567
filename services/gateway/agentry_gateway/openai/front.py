"""Plain HTTP with a body (the OpenAI-compatible `/v1/...`) on the WebSocket port.

websockets answers HTTP only during the opening handshake (`process_request`): its parser
refuses a request with a body (`Content-Length` other than 0, `Transfer-Encoding`) and its
`Response` is one finished body, so neither a POSTed chat request nor a streamed
(server-sent events) answer can go through it. Rather than switch the front server (every
socket, probe and route is websockets' today), each new TCP connection is read up to the
end of its request line first: a request for `/v1/...` is handed, transport and bytes
read so far, to an aiohttp server (aiohttp is already a dependency of every service, for
`/metrics`); anything else goes on to websockets exactly as before.

The hand-off uses websockets' documented `create_connection` hook (a subclass of its
`ServerConnection`): the websockets side of a connection only starts (`connection_made`,
its handshake task) once the request line says it is its own, so a `/v1` connection is
never known to websockets at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, cast

from websockets.asyncio.server import ServerConnection

# Longest request line read before deciding; a longer one goes to websockets (which refuses it).
MAX_REQUEST_LINE = 8192
PREFIX = b"/v1/"

HttpProtocolFactory = Callable[[], asyncio.Protocol]


def wants_http(request_line: bytes) -> bool:
    """Whether a request line (`POST /v1/chat/completions HTTP/1.1`) is for the HTTP app."""
    parts = request_line.split(b" ")
    return len(parts) == 3 and (parts[1].startswith(PREFIX) or parts[1] == PREFIX.rstrip(b"/"))


class SplitConnection(ServerConnection):
    """Reads the request line, then becomes the websockets connection or hands off."""

    # Set by `split_connection` on a subclass (websockets takes a class).
    http_protocol: ClassVar[HttpProtocolFactory]
    sniff_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sniffed: bytearray | None = None  # None once decided
        self._raw: asyncio.Transport | None = None
        self._sniff_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has every method of asyncio.Transport without subclassing it.
        self._raw = cast(asyncio.Transport, transport)
        self._sniffed = bytearray()
        # websockets' open_timeout starts only with its handshake: a client that sends
        # nothing would otherwise hold the connection for ever.
        self._sniff_deadline = asyncio.get_running_loop().call_later(self.sniff_timeout, self._raw.abort)

    def data_received(self, data: bytes) -> None:
        if self._sniffed is None:
            super().data_received(data)
            return
        self._sniffed += data
        end = self._sniffed.find(b"\r\n")
        if end < 0 and len(self._sniffed) < MAX_REQUEST_LINE:
            return
        first, self._sniffed = bytes(self._sniffed), None
        assert self._raw is not None and self._sniff_deadline is not None
        self._sniff_deadline.cancel()
        if end >= 0 and wants_http(first[:end]):
            self._hand_off(self._raw, first)
            return
        super().connection_made(self._raw)
        super().data_received(first)

    def _hand_off(self, transport: asyncio.Transport, first: bytes) -> None:
        protocol = type(self).http_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(first)

    def eof_received(self) -> None:
        if self._sniffed is None:
            super().eof_received()
        # else: closed before saying what it wants; returning None closes our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sniffed is not None:
            if self._sniff_deadline is not None:
                self._sniff_deadline.cancel()
            return  # never reached websockets
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        if self._sniffed is None:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._sniffed is None:
            super().resume_writing()


def split_connection(http_protocol: HttpProtocolFactory, sniff_timeout: float) -> type[ServerConnection]:
    """A `create_connection` for websockets' `serve`: `/v1` requests go to `http_protocol()`."""
    attributes = {"http_protocol": staticmethod(http_protocol), "sniff_timeout": sniff_timeout}
    return cast(type[ServerConnection], type("GatewayConnection", (SplitConnection,), attributes))
