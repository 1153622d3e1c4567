"""The gateway's one authenticator: verifies tokens at the handshake and in `reauth`
frames, and counts and logs every refusal (the reason and the client's address; never
the token).

One verifier per process, chosen by the settings: the issuer's JWKS (RS256/ES256, for
real deployments), an HS256 secret (development, tests), or none (AUTH_DEV_IDENTITY).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from agentry_shared.settings import GatewaySettings

from agentry_gateway import metrics
from agentry_gateway.auth import ASYMMETRIC, AuthError, Identity, Policy, decode, dev_identity, header_of, token_of
from agentry_gateway.jwks import KeySet, file_fetch, url_fetch

log = logging.getLogger(__name__)


class Verifier(Protocol):
    async def verify(self, token: str) -> Identity: ...


class SecretVerifier:
    """HS256 with a shared secret: development and tests."""

    def __init__(self, secret: str, policy: Policy) -> None:
        self._secret = secret
        self._policy = policy

    async def verify(self, token: str) -> Identity:
        return decode(token, self._secret, ["HS256"], self._policy)


class JwksVerifier:
    """RS256/ES256 against the issuer's published keys."""

    def __init__(self, keys: KeySet, policy: Policy) -> None:
        self.keys = keys
        self._policy = policy

    async def verify(self, token: str) -> Identity:
        alg, kid = header_of(token)
        if alg not in ASYMMETRIC:  # before any key lookup: alg=none, HS256 with a public key
            raise AuthError(401, "bad_algorithm", "algorithm not allowed")
        key = await self.keys.key(kid)
        if key.algorithm_name != alg:
            raise AuthError(401, "bad_algorithm", "algorithm does not match the key")
        return decode(token, key, [alg], self._policy)


def verifier_from(settings: GatewaySettings) -> Verifier | None:
    """The settings' verifier; None means the development identity (no tokens)."""
    policy = Policy(
        audience=settings.auth_jwt_audience,
        issuer=settings.auth_jwt_issuer,
        leeway=settings.auth_jwt_leeway_seconds,
    )
    if settings.auth_jwt_secret is not None:
        return SecretVerifier(settings.auth_jwt_secret.get_secret_value(), policy)
    fetch = None
    if settings.auth_jwks_url is not None:
        fetch = url_fetch(settings.auth_jwks_url)
    elif settings.auth_jwks_file is not None:
        fetch = file_fetch(settings.auth_jwks_file)
    if fetch is None:
        return None
    keys = KeySet(
        fetch,
        refetch_seconds=settings.auth_jwks_refetch_seconds,
        max_age_seconds=settings.auth_jwks_max_age_seconds,
    )
    # Real deployments: a token without exp would never expire.
    return JwksVerifier(keys, Policy(policy.audience, policy.issuer, policy.leeway, require_exp=True))


def refused(exc: AuthError, peer: str, where: str) -> None:
    metrics.AUTH_REFUSALS.labels(exc.reason).inc()
    log.warning("authentication refused", extra={"reason": exc.reason, "client": peer, "at": where})


def peer(address: object) -> str:
    """A client's address for logs (behind a proxy: the proxy's)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class Authenticator:
    def __init__(self, verifier: Verifier | None, leeway: float = 0.0) -> None:
        self.verifier = verifier
        # A socket's token is judged expired at exp + leeway, as at the handshake.
        self.leeway = leeway

    @property
    def dev_identity(self) -> bool:
        return self.verifier is None

    async def handshake(self, path: str, authorization: Sequence[str], peer: str) -> Identity:
        """The identity of an upgrade request (`path` with its query), or AuthError."""
        try:
            if self.verifier is None:
                return dev_identity(path)
            return await self.verifier.verify(token_of(path, authorization))
        except AuthError as exc:
            refused(exc, peer, "handshake")
            raise

    async def reauth(self, current: Identity, token: str, peer: str) -> Identity:
        """The same identity with the new token's expiry, or AuthError (nothing changes)."""
        try:
            if self.verifier is None:
                raise AuthError(400, "no_tokens", "this gateway takes no tokens (development identity)")
            fresh = await self.verifier.verify(token)
            if fresh != current:
                raise AuthError(403, "other_identity", "the token is for another tenant or user")
        except AuthError as exc:
            refused(exc, peer, "reauth")
            raise
        return fresh
