"""Parsing server frames into the pydantic models of agentry_shared.contracts.frames.

A frame type this client does not know (a newer gateway) becomes an `UnknownFrame` instead
of an error, so an old client keeps working while the protocol grows. So does a code it
does not know (a `turn.failed`, `tool.finished` or `error` of a newer gateway): the frame
keeps its class, its code is the string that came. Refusing such a frame would end the
conversation for this client: its seq never taken, every later frame looks like a gap.
"""

from __future__ import annotations

import json
from typing import Any, cast, get_args

from agentry_shared.contracts.frames import ConversationList, ErrorFrame, ServerFrame, TurnCompleted, TurnFailed
from pydantic import BaseModel, ConfigDict, ValidationError


class UnknownFrame(BaseModel):
    """A server frame of a type this client does not know; every field is kept."""

    model_config = ConfigDict(extra="allow")
    type: str
    conversation_id: str | None = None
    turn_id: str | None = None
    seq: int = 0


TurnFrame = ServerFrame | UnknownFrame  # a frame of a conversation (it has a seq)
# `error` and `conversations` (the answer to `list_conversations`) belong to no conversation.
Frame = TurnFrame | ErrorFrame | ConversationList
TERMINAL = (TurnCompleted, TurnFailed)


def parse_frame(raw: str | bytes) -> Frame:
    """One text frame from the gateway, typed; raises ValueError on something that is no frame."""
    data: Any = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(f"not a server frame: {str(raw)[:200]!r}")
    model = _OTHER_TYPES.get(data["type"]) or _FRAME_TYPES.get(data["type"])
    if model is None:
        return UnknownFrame.model_validate(data)
    try:
        frame = cast(Frame, model.model_validate(data))
    except ValidationError as error:
        if not all(e["type"] == "literal_error" for e in error.errors()):
            raise
        return cast(Frame, _built(model, data))  # only values of closed sets this client does not know
    return frame


# The frame class of each `type` (the union's members), and of the frames of no conversation.
_FRAME_TYPES: dict[str, type[BaseModel]] = {
    member.model_fields["type"].default: member for member in get_args(get_args(ServerFrame)[0])
}
_OTHER_TYPES: dict[str, type[BaseModel]] = {"error": ErrorFrame, "conversations": ConversationList}


def _built(model: type[Any], data: dict[str, Any]) -> Any:
    """`model` from `data` without checking values (nested models built the same way):
    used only where every field validated but for a closed set's newer value."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in data:
            value = data[name]
            kind = field.annotation
            if isinstance(value, dict) and isinstance(kind, type) and issubclass(kind, BaseModel):
                value = _built(kind, value)
            values[name] = value
    return model.model_construct(**values)


def frame_dict(frame: Frame) -> dict[str, Any]:
    """The frame as the JSON object it came as (for printing and for tests that compare dicts)."""
    return frame.model_dump(mode="json")
