"""What the RPC server and its handler families share: the broadcast they are given, and
how a validation error is named in a reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentry_shared.contracts.control import ControlMessage
from pydantic import ValidationError

# Sends a control message to every reasoner and tool-runner (the control exchange).
Broadcast = Callable[[ControlMessage], Awaitable[None]]


def first_error(exc: ValidationError) -> str:
    """Where and what, e.g. `scope.user_id: Field required`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where or 'body'}: {first['msg']}"
