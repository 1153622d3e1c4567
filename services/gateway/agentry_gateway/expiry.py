"""A socket lives as long as its token: closed at `exp` unless a `reauth` frame brings a
fresh token for the same tenant and user first.

`exp` is judged with the handshake's leeway (AUTH_JWT_LEEWAY_SECONDS), so a token the
handshake accepted is never cut off earlier than the handshake would have refused it.
The timer is on the event loop's clock; `exp` is wall-clock time, converted once per
token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from agentry_shared.contracts.errors import ClientErrorCode
from agentry_shared.contracts.frames import ErrorFrame, Reauth

from agentry_gateway import inbound
from agentry_gateway.auth import AuthError, Identity
from agentry_gateway.authenticator import Authenticator

# Application close code (4000-4999): 4000 + HTTP 401, what the handshake would answer now.
TOKEN_EXPIRED_CLOSE: Final = 4401
TOKEN_EXPIRED: Final[ClientErrorCode] = "token_expired"  # noqa: S105 (an error code, not a password)
REAUTH_REFUSED: Final[ClientErrorCode] = "reauth_refused"


class Expiry:
    def __init__(self, identity: Identity, authenticator: Authenticator | None, on_expire: Callable[[], None]) -> None:
        self.identity = identity
        self._authenticator = authenticator
        self._on_expire = on_expire
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def reauth(self, frame: Reauth, peer: str) -> ErrorFrame | None:
        """None when the token was taken (the new expiry runs from now on), else the
        error frame to answer with; the old expiry stands."""
        if self._authenticator is None:
            return inbound.error(REAUTH_REFUSED, "this gateway takes no tokens", id=frame.id)
        try:
            self.identity = await self._authenticator.reauth(self.identity, frame.token, peer)
        except AuthError as exc:
            return inbound.error(REAUTH_REFUSED, exc.message, id=frame.id)
        self._arm()
        return None

    def _arm(self) -> None:
        self.stop()
        expires_at = self.identity.expires_at
        if expires_at is None:
            return
        leeway = self._authenticator.leeway if self._authenticator is not None else 0.0
        delay = max(0.0, expires_at + leeway - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_expire)
