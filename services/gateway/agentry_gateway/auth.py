"""Who is on the other end of a socket, decided before the WebSocket upgrade completes.

Pure (no I/O) so every accept/refuse rule is a plain unit test. Refusing during the
handshake means an unauthenticated client never gets an open socket, never consumes a
connection slot, and sees an ordinary HTTP status it can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt

# The Scope id pattern (contracts/scope.py): ids end up in every bus message's scope,
# so anything Scope would reject is refused here, with a 400 rather than a crash later.
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
DEFAULT_TENANT = "default"
DEV_USER = "dev"


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    user_id: str


class AuthError(Exception):
    """The request is refused with this HTTP status (401 no/bad token, 400 bad id)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "Authorization header must be 'Bearer <token>'")
    return token.strip()


def _checked(identity: Identity) -> Identity:
    for name, value in (("tenant", identity.tenant_id), ("user", identity.user_id)):
        if not _ID.match(value):
            raise AuthError(400, f"invalid {name} id")
    return identity


def _from_jwt(token: str, secret: str, audience: str | None) -> Identity:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],  # pinned: never let the token choose (alg=none, RS/HS confusion)
            audience=audience,
            options={"require": ["sub"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError(401, "token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, "invalid token") from exc
    sub, tenant = claims.get("sub"), claims.get("tenant", DEFAULT_TENANT)
    if not isinstance(sub, str) or not isinstance(tenant, str):
        raise AuthError(400, "sub and tenant claims must be strings")
    return Identity(tenant_id=tenant, user_id=sub)


def authenticate(path: str, authorization: str | None, *, secret: str | None, audience: str | None) -> Identity:
    """The identity of a handshake request (`path` includes the query string).

    With a secret, a JWT is required: the Authorization header wins over `?token=`
    (query tokens end up in access logs, so the header is the better place).
    Without one (development only) the user is whatever `?user=` says.
    """
    query = parse_qs(urlsplit(path).query)
    if secret is None:
        return _checked(Identity(tenant_id=DEFAULT_TENANT, user_id=_first(query, "user") or DEV_USER))
    token = _bearer(authorization) or _first(query, "token")
    if not token:
        raise AuthError(401, "missing token")
    return _checked(_from_jwt(token, secret, audience))
