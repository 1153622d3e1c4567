"""Who is on the other end of a socket: the rules, with no I/O.

Pure, so every accept/refuse rule is a plain unit test. The handshake refuses before the
WebSocket upgrade completes: an unauthenticated client never gets an open socket, never
consumes a connection slot, and sees an ordinary HTTP status it can act on. Getting the
keys (a JWKS over HTTP) and counting refusals are `authenticator`'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args
from urllib.parse import parse_qs, urlsplit

import jwt

# The Scope id pattern (contracts/scope.py): ids end up in every bus message's scope,
# so anything Scope would reject is refused here, with a 400 rather than a crash later.
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
DEFAULT_TENANT = "default"
DEV_USER = "dev"
# Algorithms a JWKS key may verify; HS256 is for AUTH_JWT_SECRET only. The token never
# chooses beyond these (alg=none, an HS256 token "signed" with a public key).
ASYMMETRIC: Final = ("RS256", "ES256")
_TIME_CLAIMS = ("exp", "nbf", "iat")

RefusalReason = Literal[
    "missing_token",
    "malformed_header",
    "invalid_token",
    "bad_algorithm",
    "unknown_key",
    "keys_unavailable",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "bad_claims",
    "invalid_id",
    "other_identity",
    "no_tokens",
]

REFUSAL_MEANINGS: Final[dict[RefusalReason, str]] = {
    "missing_token": "no token in the Authorization header or ?token=",
    "malformed_header": "Authorization is not 'Bearer <token>', or there is more than one",
    "invalid_token": "not a JWT, or its signature does not verify",
    "bad_algorithm": "the token's alg is not one this gateway accepts for its key",
    "unknown_key": "the token's kid is in no key of the JWKS, even after a refetch",
    "keys_unavailable": "the JWKS could not be fetched (and none is cached)",
    "expired": "exp is past (beyond AUTH_JWT_LEEWAY_SECONDS)",
    "not_yet_valid": "nbf or iat is in the future (beyond AUTH_JWT_LEEWAY_SECONDS)",
    "wrong_issuer": "iss is not AUTH_JWT_ISSUER",
    "wrong_audience": "aud does not name AUTH_JWT_AUDIENCE",
    "bad_claims": "a required claim is missing, or sub, tenant, exp, nbf or iat is of the wrong type",
    "invalid_id": "sub, tenant or ?user= does not match the Scope id pattern",
    "other_identity": "reauth: the new token is for another tenant or user",
    "no_tokens": "reauth: this gateway runs the development identity and takes no tokens",
}
assert set(REFUSAL_MEANINGS) == set(get_args(RefusalReason))


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    user_id: str
    # Unix time of the token's `exp` (None: no token, or none in it). Not part of who it
    # is: a reauth changes it and the identity stays the same.
    expires_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Policy:
    """The claim checks every token gets, whatever verified its signature."""

    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0
    require_exp: bool = False


class AuthError(Exception):
    """The request is refused with this HTTP status (401 no/bad token, 400 bad id,
    503 keys unavailable); `reason` is the metric label and the log's, never the token."""

    def __init__(self, status: int, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason: RefusalReason = reason
        self.message = message


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bearer(authorization: Sequence[str]) -> str | None:
    if not authorization:
        return None
    if len(authorization) > 1:
        raise AuthError(400, "malformed_header", "more than one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "malformed_header", "Authorization header must be 'Bearer <token>'")
    return token.strip()


def token_of(path: str, authorization: Sequence[str]) -> str:
    """The token of a handshake request (`path` includes the query string).

    The Authorization header wins over `?token=` (query tokens end up in access logs,
    so the header is the better place).
    """
    token = _bearer(authorization) or _first(parse_qs(urlsplit(path).query), "token")
    if not token:
        raise AuthError(401, "missing_token", "missing token")
    return token


def dev_identity(path: str) -> Identity:
    """Development only (AUTH_DEV_IDENTITY): the user is whatever `?user=` says."""
    user = _first(parse_qs(urlsplit(path).query), "user") or DEV_USER
    return _checked(Identity(tenant_id=DEFAULT_TENANT, user_id=user))


def _checked(identity: Identity) -> Identity:
    for name, value in (("tenant", identity.tenant_id), ("user", identity.user_id)):
        if not _ID.match(value):
            raise AuthError(400, "invalid_id", f"invalid {name} id")
    return identity


_REFUSALS: Final[tuple[tuple[type[jwt.InvalidTokenError], RefusalReason, str], ...]] = (
    (jwt.ExpiredSignatureError, "expired", "token expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "token not valid yet"),
    (jwt.InvalidIssuerError, "wrong_issuer", "wrong issuer"),
    (jwt.InvalidAudienceError, "wrong_audience", "wrong audience"),
    (jwt.InvalidAlgorithmError, "bad_algorithm", "algorithm not allowed"),
    (jwt.MissingRequiredClaimError, "bad_claims", "a required claim is missing"),
)


def _refusal(exc: jwt.InvalidTokenError) -> AuthError:
    for kind, reason, message in _REFUSALS:
        if isinstance(exc, kind):
            return AuthError(401, reason, message)
    return AuthError(401, "invalid_token", "invalid token")


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def decode(token: str, key: Any, algorithms: list[str], policy: Policy) -> Identity:
    """The identity in a token whose signature `key` verifies with one of `algorithms`.

    `algorithms` is pinned by the caller, never taken from the token.
    """
    required = ["sub", "exp"] if policy.require_exp else ["sub"]
    if policy.issuer is not None:
        required.append("iss")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
            options={"require": required, "verify_aud": policy.audience is not None},
        )
    except jwt.InvalidTokenError as exc:
        raise _refusal(exc) from exc
    # PyJWT takes int() of exp, so "exp": "1790000000" would pass as a number.
    if any(name in claims and not _numeric(claims[name]) for name in _TIME_CLAIMS):
        raise AuthError(401, "bad_claims", "exp, nbf and iat must be numbers")
    sub, tenant = claims.get("sub"), claims.get("tenant", DEFAULT_TENANT)
    if not isinstance(sub, str) or not isinstance(tenant, str):
        raise AuthError(400, "bad_claims", "sub and tenant claims must be strings")
    exp = claims.get("exp")
    return _checked(Identity(tenant_id=tenant, user_id=sub, expires_at=float(exp) if exp is not None else None))


def header_of(token: str) -> tuple[str, str | None]:
    """The (alg, kid) a token claims, before anything is verified: only to pick a key."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, "invalid_token", "invalid token") from exc
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise AuthError(401, "invalid_token", "invalid token header")
    return alg, kid
