"""Broadcasts on the control exchange: every reasoner and tool-runner hears them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter


class CancelRequested(BaseModel):
    """Stop this turn wherever it runs: close its model stream, kill its tool calls."""

    kind: Literal["control.cancel_requested"] = "control.cancel_requested"
    conversation_id: str
    turn_id: str


ControlMessage = Annotated[CancelRequested, Field(discriminator="kind")]
CONTROL_MESSAGE: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)
