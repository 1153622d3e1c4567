"""Plain HTTP on the WebSocket port, answered during the handshake (`process_request`).

One port for sockets, probes and metrics keeps the gateway's deployment to one container
port, and lets a 401/400/404 be sent before any socket is opened.
"""

from __future__ import annotations

import email.utils
import http
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from agentry_shared.ops import metrics_response_body
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agentry_gateway import webpage
from agentry_gateway.auth import AuthError

WS_PATH = "/ws"
Readiness = Callable[[], tuple[bool, str]]


def response(status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    code = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def json_response(status: int, payload: dict[str, object], extra: list[tuple[str, str]] | None = None) -> Response:
    return response(status, json.dumps(payload).encode(), "application/json", extra)


def route(request: Request, ready: Readiness) -> Response | None:
    """The HTTP answer to a request; None for a socket on /ws (authenticated next)."""
    path = urlsplit(request.path).path
    if path == "/healthz":
        return json_response(200, {"status": "ok"})
    if path == "/readyz":
        ok, detail = ready()
        return json_response(200 if ok else 503, {"ready": ok, "detail": detail})
    if path == "/metrics":
        body, content_type = metrics_response_body()
        return response(200, body, content_type)
    if (web := webpage.page(path, request.headers.get("Host"))) is not None:
        return response(200, web.body, web.content_type, web.headers)
    if path != WS_PATH:
        return json_response(404, {"error": "not_found", "message": f"no such path; sockets open on {WS_PATH}"})
    return None


_CODES = {400: "bad_request", 401: "unauthorized", 503: "unavailable"}


def refusal(exc: AuthError) -> Response:
    """A refused handshake: the status, and a message that says what to fix."""
    challenge = [("WWW-Authenticate", 'Bearer realm="agentry"')] if exc.status == 401 else []
    if exc.status == 503:
        challenge.append(("Retry-After", "5"))
    code = _CODES.get(exc.status, "forbidden")
    return json_response(exc.status, {"error": code, "reason": exc.reason, "message": exc.message}, challenge)
