"""Refusals of the OpenAI-compatible endpoint, in OpenAI's error shape.

`{"error": {"message", "type", "param", "code"}}` with the HTTP status a client library
maps to its exception (the official SDK: 400 BadRequestError, 401 AuthenticationError,
403 PermissionDeniedError, 404 NotFoundError, 413/other 4xx APIStatusError, 429
RateLimitError, 5xx InternalServerError). `code` is one of `OpenAIErrorCode`, or, for a
turn that failed, its `TurnFailureCode`.
"""

from __future__ import annotations

import json
import math
from typing import Final

from agentry_shared.contracts.errors import ClientErrorCode, OpenAIErrorCode, TurnFailureCode, codes
from aiohttp import web

from agentry_gateway.auth import AuthError
from agentry_gateway.inbound import Rejected

# OpenAI's `type` by status class.
_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# The WebSocket refusals the shared code raises (`Rejected`), as this endpoint's codes.
_FROM_CLIENT_CODE: Final[dict[ClientErrorCode, tuple[int, OpenAIErrorCode]]] = {
    "forbidden": (403, "forbidden"),
    "not_found": (404, "not_found"),
    "conversation_limit": (429, "conversation_limit"),
    # Turn budgets memory refused the turn for (docs/protocol.md, "Turn budgets").
    "rate_limited": (429, "rate_limited"),
    "budget_exceeded": (429, "budget_exceeded"),
    "unavailable": (503, "unavailable"),
    "text_too_long": (400, "text_too_long"),
}

# Refusals that the same request, sent again, cannot get past: a cancelled turn (rerunning
# it would undo the cancel), a count limit that does not reset by waiting. They say so in
# `x-should-retry: false`, which the official SDKs obey (they retry 409, 429 and 5xx).
_FINAL: Final[frozenset[str]] = frozenset({"cancelled", "conversation_limit", "memory_limit_reached"})

# A failed turn, by its code: what the client can do about it decides the status.
_TURN_STATUS: Final[dict[TurnFailureCode, int]] = {
    "model_unavailable": 503,
    "memory_unavailable": 503,
    "model_error": 502,
    "context_too_long": 400,
    "deadline_exceeded": 504,
    "memory_forbidden": 403,
    "memory_not_found": 404,
    "memory_limit_reached": 429,
    "cancelled": 409,
}

# When a turn that failed for a service being down may be sent again (`Retry-After`). The
# gateway cannot see the reasoner's circuit breaker, so these are fixed and conservative:
# a model that failed a turn (after the reasoner's own retries) has its breaker open for
# LLM_BREAKER_COOLDOWN_SECONDS (30 s by default); a retry sooner, which the SDKs make by
# themselves without the header, fails at once. Memory that did not answer gets a shorter
# pause, as the gateway's own `unavailable` does.
TURN_RETRY_AFTER_SECONDS: Final[dict[TurnFailureCode, float]] = {
    "model_unavailable": 30.0,
    "memory_unavailable": 5.0,
}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        code: OpenAIErrorCode | TurnFailureCode,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}  # more response headers (the conversation's id)

    def body(self) -> dict[str, object]:
        kind = _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self, extra: dict[str, str] | None = None) -> web.Response:
        headers = {**self.headers, **(extra or {})}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="agentry"'
        if self.code in _FINAL:
            headers["x-should-retry"] = "false"
        return web.json_response(self.body(), status=self.status, headers=headers)

    def sse(self) -> bytes:
        """The error as a server-sent event, once a stream has started (its status is sent)."""
        return f"data: {json.dumps(self.body())}\n\n".encode()


def from_rejected(exc: Rejected) -> OpenAIError:
    """A refusal of the shared code, keeping its `retry_after` (a budget's is when it resets)."""
    status, mapped = _FROM_CLIENT_CODE.get(exc.code, (500, "internal"))
    retry_after = exc.retry_after if exc.retry_after is not None else (1.0 if status == 503 else None)
    return OpenAIError(status, mapped, exc.message, retry_after=retry_after)


def from_auth(exc: AuthError) -> OpenAIError:
    if exc.status == 401:
        return OpenAIError(401, "invalid_token", exc.message)
    if exc.status == 503:
        return OpenAIError(503, "unavailable", exc.message, retry_after=5.0)
    return OpenAIError(400, "invalid_identity", exc.message)


def from_turn_failure(error: object) -> OpenAIError:
    """A `turn.failed` frame's `error` ({code, message}) as this endpoint's error."""
    fields = error if isinstance(error, dict) else {}
    raw, message = fields.get("code"), str(fields.get("message", ""))
    code: TurnFailureCode = raw if raw in codes(TurnFailureCode) else "internal"
    return OpenAIError(
        _TURN_STATUS.get(code, 500),
        code,
        f"the turn failed ({code}): {message}",
        retry_after=TURN_RETRY_AFTER_SECONDS.get(code),
    )
