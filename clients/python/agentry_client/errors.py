"""What can go wrong for a client, as exceptions.

    AgentryError
    ├── ServerError        the gateway refused a frame (an `error` frame); `.frame.code` says which
    ├── TurnFailed         a turn ended with `turn.failed`; `.frame.error.code` says why
    └── ConnectionLost     the socket dropped and could not be resumed (or an unaccepted message
                           may or may not have been taken: send it again only if that is harmless)
"""

from __future__ import annotations

import math

from agentry_shared.contracts.frames import ErrorFrame
from agentry_shared.contracts.frames import TurnFailed as TurnFailedFrame


class AgentryError(Exception):
    """Base of every error the client raises."""


class ServerError(AgentryError):
    """The gateway answered a frame of ours with an `error` frame (docs/protocol.md)."""

    def __init__(self, frame: ErrorFrame) -> None:
        # The message names the limit; `retry_after_ms` (not in the message) says when to retry.
        wait = f" (retry in {math.ceil(frame.retry_after_ms / 1000)} s)" if frame.retry_after_ms else ""
        super().__init__(f"{frame.code}: {frame.message}{wait}")
        self.frame = frame

    @property
    def retry_after_ms(self) -> int | None:
        """When the same frame may succeed, when waiting helps (a limit's refusal)."""
        return self.frame.retry_after_ms

    @property
    def code(self) -> str:
        return self.frame.code


class TurnFailed(AgentryError):
    """The turn ended without an answer (`turn.failed`)."""

    def __init__(self, frame: TurnFailedFrame) -> None:
        super().__init__(f"{frame.error.code}: {frame.error.message}")
        self.frame = frame

    @property
    def code(self) -> str:
        return self.frame.error.code


class ConnectionLost(AgentryError):
    """The connection dropped and the client gave up reconnecting, or could not tell what happened."""
