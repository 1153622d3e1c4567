"""Parsing server frames into the pydantic models of agentry_shared.contracts.frames.

A frame type this client does not know (a newer gateway) becomes an `UnknownFrame` instead
of an error, so an old client keeps working while the protocol grows.
"""

from __future__ import annotations

import json
from typing import Any

from agentry_shared.contracts.frames import SERVER_FRAME, ErrorFrame, ServerFrame, TurnCompleted, TurnFailed
from pydantic import BaseModel, ConfigDict, ValidationError


class UnknownFrame(BaseModel):
    """A server frame of a type this client does not know; every field is kept."""

    model_config = ConfigDict(extra="allow")
    type: str
    conversation_id: str | None = None
    turn_id: str | None = None
    seq: int = 0


TurnFrame = ServerFrame | UnknownFrame  # a frame of a conversation (it has a seq)
Frame = TurnFrame | ErrorFrame
TERMINAL = (TurnCompleted, TurnFailed)


def parse_frame(raw: str | bytes) -> Frame:
    """One text frame from the gateway, typed; raises ValueError on something that is no frame."""
    data: Any = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(f"not a server frame: {str(raw)[:200]!r}")
    if data["type"] == "error":
        return ErrorFrame.model_validate(data)
    try:
        return SERVER_FRAME.validate_python(data)
    except ValidationError as error:
        if any(e["type"] == "union_tag_invalid" for e in error.errors()):
            return UnknownFrame.model_validate(data)
        raise


def frame_dict(frame: Frame) -> dict[str, Any]:
    """The frame as the JSON object it came as (for printing and for tests that compare dicts)."""
    return frame.model_dump(mode="json")
