"""What a raw client frame is: a validated client frame, or the error frame to answer with.

Pure, so every bad-input rule is a unit test without a socket. Nothing here raises for
bad input: a client mistake costs one error frame and the socket stays usable.

Adding a client frame type means adding its model to `contracts.frames.CLIENT_FRAME`;
give it extra checks in `_CHECKS` if the schema alone cannot express them. Its schema
failures are reported as `invalid_<type>` (so `invalid_message`, `invalid_cancel`,
`invalid_resume`, `invalid_approve`).

Validation is strict: the input is JSON, whose numbers and strings are what they are, so
`"after_seq": "5"` or `true` is a client bug to report, not something to coerce.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentry_shared.contracts.frames import CLIENT_FRAME, ClientFrame, ErrorFrame, SendMessage
from pydantic import ValidationError

INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
UNKNOWN_TYPE = "unknown_type"
INVALID_MESSAGE = "invalid_message"
TEXT_TOO_LONG = "text_too_long"
FRAME_TOO_LARGE = "frame_too_large"
BINARY_NOT_SUPPORTED = "binary_not_supported"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"
NOT_FOUND = "not_found"  # cancel: no such turn; approve: no such call awaiting approval
TURN_NOT_ACTIVE = "turn_not_active"  # cancel: the turn already ended
RESUME_GAP = "resume_gap"  # replay: frames no longer kept by memory
RESUME_REQUIRED = "resume_required"  # catch-up after a broker outage failed: the client resumes
APPROVAL_EXPIRED = "approval_expired"  # approve: too late, the call was denied
APPROVAL_ALREADY_DECIDED = "approval_already_decided"  # approve: decided the other way before

_MAX_ID_CHARS = 128  # as SendMessage.id: an id we would not accept is not echoed either
_BAD_TAG = {"union_tag_invalid", "union_tag_not_found"}


class Rejected(Exception):
    """A client request is refused with this error code; the socket stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int
    max_text_chars: int


def error(code: str, message: str, *, id: str | None = None, conversation_id: str | None = None) -> ErrorFrame:
    return ErrorFrame(code=code, message=message, id=id, conversation_id=conversation_id)


def _check_message(frame: SendMessage, limits: Limits) -> tuple[str, str] | None:
    if not frame.text.strip():
        return INVALID_MESSAGE, "text must not be blank"
    if len(frame.text) > limits.max_text_chars:
        return TEXT_TOO_LONG, f"text is longer than {limits.max_text_chars} characters"
    return None


# Checks the schema cannot express, per frame class: (code, message) when the frame is refused.
_CHECKS: dict[type[Any], Callable[[Any, Limits], tuple[str, str] | None]] = {SendMessage: _check_message}


def _utf8_size_over(text: str, limit: int) -> bool:
    """Whether the frame's UTF-8 size exceeds `limit`, without encoding when length decides."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode()) > limit


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"][1:]) or "frame"
    return f"{field}: {first['msg']}"


def parse(data: str | bytes, limits: Limits) -> ClientFrame | ErrorFrame:
    """The client frame in `data`, or the error frame that answers it."""
    if isinstance(data, bytes):
        return error(BINARY_NOT_SUPPORTED, "send JSON in text frames")
    if _utf8_size_over(data, limits.max_frame_bytes):
        return error(FRAME_TOO_LARGE, f"frame is larger than {limits.max_frame_bytes} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        return error(INVALID_JSON, "frame is not valid JSON")
    if not isinstance(raw, dict):
        return error(INVALID_FRAME, "frame must be a JSON object")
    client_id = raw.get("id")
    echo = client_id if isinstance(client_id, str) and len(client_id) <= _MAX_ID_CHARS else None
    try:
        frame = CLIENT_FRAME.validate_python(raw, strict=True)
    except ValidationError as exc:
        if any(e["type"] in _BAD_TAG for e in exc.errors(include_url=False)):
            return error(UNKNOWN_TYPE, "missing or unknown frame type", id=echo)
        kind = str(raw["type"]).replace(".", "_")
        return error(f"invalid_{kind}", _describe(exc), id=echo)
    check = _CHECKS.get(type(frame))
    refusal = check(frame, limits) if check is not None else None
    if refusal is not None:
        return error(refusal[0], refusal[1], id=echo, conversation_id=getattr(frame, "conversation_id", None))
    return frame
