"""The issuer's public keys (a JWKS), fetched from a URL or read from a file, cached.

Key rotation: a token signed with a `kid` we do not know makes us fetch again, at most
once per `refetch_seconds` (a flood of made-up kids costs the issuer one request per
interval, not one per handshake); the set is also fetched again once `max_age_seconds`
old, so a key the issuer removed stops working. A failed fetch keeps the keys we have.
Fetching blocks (urllib, file I/O), so it runs in a thread: the event loop serves every
socket of the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import jwt
from jwt import PyJWK

from agentry_gateway.auth import ASYMMETRIC, AuthError

log = logging.getLogger(__name__)

Fetch = Callable[[], bytes]
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 5.0


def url_fetch(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> Fetch:
    def fetch() -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (https, or loopback http: settings)
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            body: bytes = reply.read(MAX_JWKS_BYTES + 1)
        return body

    return fetch


def file_fetch(path: Path) -> Fetch:
    def fetch() -> bytes:
        with path.open("rb") as f:
            return f.read(MAX_JWKS_BYTES + 1)

    return fetch


def parse(body: bytes) -> list[tuple[str | None, PyJWK]]:
    """The signing keys of a JWKS document that verify one of `ASYMMETRIC` (others are
    skipped: a symmetric `oct` key in a JWKS must never verify anything)."""
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS: no keys list")
    keys: list[tuple[str | None, PyJWK]] = []
    for data in document["keys"]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in ASYMMETRIC:
            kid = data.get("kid")
            keys.append((kid if isinstance(kid, str) else None, key))
    return keys


class KeySet:
    def __init__(
        self,
        fetch: Fetch,
        *,
        refetch_seconds: float,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refetch = refetch_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: list[tuple[str | None, PyJWK]] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # for tests and the log

    async def key(self, kid: str | None) -> PyJWK:
        """The key for a token's `kid` (no kid: the set's only key)."""
        if self._keys is None or self._clock() - self._fetched_at >= self._max_age:
            await self.refresh()
        found = self._find(kid)
        if found is None and self._keys is not None:
            await self.refresh()  # rotation: the issuer may have a new key
            found = self._find(kid)
        if found is not None:
            return found
        if self._keys is None:
            raise AuthError(503, "keys_unavailable", "the issuer's keys are unavailable; retry")
        raise AuthError(401, "unknown_key", "no key for this token")

    async def refresh(self) -> None:
        """Fetch the set again, unless that was tried less than `refetch_seconds` ago."""
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._refetch:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = parse(await asyncio.to_thread(self._fetch))
            except Exception as exc:  # any failure: keep what we have, say so
                log.warning("JWKS fetch failed; keeping the keys we have", extra={"error": repr(exc)})
                return
            self._keys, self._fetched_at = keys, self._clock()
            log.info("JWKS fetched", extra={"keys": len(keys)})

    def _find(self, kid: str | None) -> PyJWK | None:
        keys = self._keys or []
        if kid is None:
            return keys[0][1] if len(keys) == 1 else None
        return next((key for key_id, key in keys if key_id == kid), None)
