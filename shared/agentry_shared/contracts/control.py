"""Broadcasts on the control exchange: every reasoner and tool-runner hears them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter


class CancelRequested(BaseModel):
    """Stop this turn wherever it runs: close its model stream, kill its tool calls."""

    kind: Literal["control.cancel_requested"] = "control.cancel_requested"
    conversation_id: str
    turn_id: str


class ApprovalDecided(BaseModel):
    """The user approved or denied a destructive tool call; the reasoner waiting on it goes on."""

    kind: Literal["control.approval_decided"] = "control.approval_decided"
    conversation_id: str
    turn_id: str
    call_id: str
    approved: bool


ControlMessage = Annotated[CancelRequested | ApprovalDecided, Field(discriminator="kind")]
CONTROL_MESSAGE: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)
