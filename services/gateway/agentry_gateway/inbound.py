"""What a raw client frame is: a validated client frame, or the error frame to answer with.

Pure, so every bad-input rule is a unit test without a socket. Nothing here raises for
bad input: a client mistake costs one error frame and the socket stays usable.

Adding a client frame type means adding its model to `contracts.frames.CLIENT_FRAME`;
give it extra checks in `_CHECKS` if the schema alone cannot express them. Its schema
failures are reported as `invalid_<type>` (so `invalid_message`, `invalid_cancel`,
`invalid_resume`, `invalid_approve`): add it to `ClientErrorCode` and
`INVALID_CLIENT_FRAME` in `contracts.errors` (a shared test checks that none is missing).

Validation is strict: the input is JSON, whose numbers and strings are what they are, so
`"after_seq": "5"` or `true` is a client bug to report, not something to coerce.

JSON can spell a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8 text can carry: a
frame holding one anywhere is refused as `invalid_frame` before anything of it is used,
so no string of a client that reaches a reply, a log line or the broker is unencodable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from agentry_shared.contracts.errors import INVALID_CLIENT_FRAME, ClientErrorCode
from agentry_shared.contracts.frames import APPROVE_ECHO_HINT, CLIENT_FRAME, ClientFrame, ErrorFrame, SendMessage
from pydantic import ValidationError

# The codes of the client `error` frame (their meanings: contracts.errors.CLIENT_ERROR_MEANINGS).
INVALID_JSON: Final[ClientErrorCode] = "invalid_json"
INVALID_FRAME: Final[ClientErrorCode] = "invalid_frame"
UNKNOWN_TYPE: Final[ClientErrorCode] = "unknown_type"
INVALID_MESSAGE: Final[ClientErrorCode] = "invalid_message"
INVALID_RESUME: Final[ClientErrorCode] = "invalid_resume"
TEXT_TOO_LONG: Final[ClientErrorCode] = "text_too_long"
FRAME_TOO_LARGE: Final[ClientErrorCode] = "frame_too_large"
BINARY_NOT_SUPPORTED: Final[ClientErrorCode] = "binary_not_supported"
RATE_LIMITED: Final[ClientErrorCode] = "rate_limited"
FORBIDDEN: Final[ClientErrorCode] = "forbidden"
UNAVAILABLE: Final[ClientErrorCode] = "unavailable"
NOT_FOUND: Final[ClientErrorCode] = "not_found"
TURN_NOT_ACTIVE: Final[ClientErrorCode] = "turn_not_active"
RESUME_GAP: Final[ClientErrorCode] = "resume_gap"
RESUME_REQUIRED: Final[ClientErrorCode] = "resume_required"
APPROVAL_EXPIRED: Final[ClientErrorCode] = "approval_expired"
APPROVAL_ALREADY_DECIDED: Final[ClientErrorCode] = "approval_already_decided"
APPROVAL_ARGS_MISMATCH: Final[ClientErrorCode] = "approval_args_mismatch"
INTERNAL: Final[ClientErrorCode] = "internal"
SOCKET_LIMIT: Final[ClientErrorCode] = "socket_limit"
FOLLOW_LIMIT: Final[ClientErrorCode] = "follow_limit"
CONVERSATION_LIMIT: Final[ClientErrorCode] = "conversation_limit"
BUDGET_EXCEEDED: Final[ClientErrorCode] = "budget_exceeded"

_MAX_ID_CHARS = 128  # as SendMessage.id: an id we would not accept is not echoed either
_BAD_TAG = {"union_tag_invalid", "union_tag_not_found"}


class Rejected(Exception):
    """A client request is refused with this error code; the socket stays open."""

    def __init__(self, code: ClientErrorCode, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code: ClientErrorCode = code
        self.message = message
        self.retry_after = retry_after  # seconds until the same request may succeed


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int
    max_text_chars: int


def error(
    code: ClientErrorCode,
    message: str,
    *,
    id: str | None = None,
    conversation_id: str | None = None,
    retry_after: float | None = None,
) -> ErrorFrame:
    """`retry_after` (seconds): when the same frame may succeed, sent rounded up to whole ms."""
    retry_after_ms = None if retry_after is None else max(1, math.ceil(retry_after * 1000))
    return ErrorFrame(code=code, message=message, id=id, conversation_id=conversation_id, retry_after_ms=retry_after_ms)


def _check_message(frame: SendMessage, limits: Limits) -> tuple[ClientErrorCode, str] | None:
    if not frame.text.strip():
        return INVALID_MESSAGE, "text must not be blank"
    if len(frame.text) > limits.max_text_chars:
        return TEXT_TOO_LONG, f"text is longer than GATEWAY_MAX_TEXT_CHARS ({limits.max_text_chars}) characters"
    return None


# Checks the schema cannot express, per frame class: (code, message) when the frame is refused.
_CHECKS: dict[type[Any], Callable[[Any, Limits], tuple[ClientErrorCode, str] | None]] = {SendMessage: _check_message}


def _utf8_size_over(text: str, limit: int) -> bool:
    """Whether the frame's UTF-8 size exceeds `limit`, without encoding when length decides."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode()) > limit


# Fields an `approve` echoes from its `tool.approval_required`; a client written before
# they existed is told what to send rather than only which field is missing.
_APPROVE_ECHO = frozenset({"turn_id", "call_id", "args_sha256"})


def _has_lone_surrogate(data: str, raw: object) -> bool:
    """Whether the decoded frame holds a surrogate without its pair. Only a `\\uD800`-`\\uDFFF`
    escape can make one (a text frame is valid UTF-8), so frames without `\\ud` are not walked."""
    if "\\ud" not in data and "\\uD" not in data:
        return False
    try:
        json.dumps(raw, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    if any(e["type"] == "missing" and e["loc"][0] == "approve" and e["loc"][-1] in _APPROVE_ECHO for e in errors):
        return APPROVE_ECHO_HINT
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"][1:]) or "frame"
    return f"{field}: {first['msg']}"


def parse(data: str | bytes, limits: Limits) -> ClientFrame | ErrorFrame:
    """The client frame in `data`, or the error frame that answers it."""
    if isinstance(data, bytes):
        return error(BINARY_NOT_SUPPORTED, "send JSON in text frames")
    if _utf8_size_over(data, limits.max_frame_bytes):
        return error(FRAME_TOO_LARGE, f"frame is larger than GATEWAY_MAX_FRAME_BYTES ({limits.max_frame_bytes}) bytes")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        return error(INVALID_JSON, "frame is not valid JSON")
    if not isinstance(raw, dict):
        return error(INVALID_FRAME, "frame must be a JSON object")
    if _has_lone_surrogate(data, raw):
        return error(INVALID_FRAME, "frame holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)")
    client_id = raw.get("id")
    echo = client_id if isinstance(client_id, str) and len(client_id) <= _MAX_ID_CHARS else None
    try:
        frame = CLIENT_FRAME.validate_python(raw, strict=True)
    except ValidationError as exc:
        if any(e["type"] in _BAD_TAG for e in exc.errors(include_url=False)):
            return error(UNKNOWN_TYPE, "missing or unknown frame type", id=echo)
        # The type is one of CLIENT_FRAME's (else the tag check above caught it).
        return error(INVALID_CLIENT_FRAME.get(str(raw["type"]), UNKNOWN_TYPE), _describe(exc), id=echo)
    check = _CHECKS.get(type(frame))
    refusal = check(frame, limits) if check is not None else None
    if refusal is not None:
        return error(refusal[0], refusal[1], id=echo, conversation_id=getattr(frame, "conversation_id", None))
    return frame
