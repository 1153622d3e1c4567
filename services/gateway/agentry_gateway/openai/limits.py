"""Per-user limits of the HTTP endpoint, as on the WebSocket: GATEWAY_MAX_FRAMES_PER_SECOND
requests per second (burst 2x; a request is one frame's worth of work) and at most
GATEWAY_MAX_SOCKETS_PER_USER requests open at once, on this replica."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from agentry_gateway.openai.errors import OpenAIError
from agentry_gateway.ratelimit import TokenBucket

User = tuple[str, str]
_MAX_BUCKETS = 10_000  # idle users' buckets are dropped past this many


class Limits:
    def __init__(self, per_second: float, max_open: int) -> None:
        self._rate = per_second
        self._max_open = max_open
        self._buckets: dict[User, TokenBucket] = {}
        self._open: dict[User, int] = {}

    def admit(self, user: User) -> None:
        """Raises a 429 `OpenAIError` (with Retry-After) when over a limit."""
        now = time.monotonic()
        if len(self._buckets) > _MAX_BUCKETS:
            self._buckets = {u: b for u, b in self._buckets.items() if b.retry_after(now) > 0 or u in self._open}
        bucket = self._buckets.setdefault(user, TokenBucket(self._rate, 2 * self._rate, now))
        if not bucket.allow(now):
            message = f"over GATEWAY_MAX_FRAMES_PER_SECOND ({self._rate:g}) requests per second"
            raise OpenAIError(429, "rate_limited", message, retry_after=bucket.retry_after(now))
        if self._open.get(user, 0) >= self._max_open:
            message = f"this user has GATEWAY_MAX_SOCKETS_PER_USER ({self._max_open}) requests open here"
            raise OpenAIError(429, "concurrency_limit", message, retry_after=1.0)

    @contextmanager
    def holding(self, user: User) -> Iterator[None]:
        self._open[user] = self._open.get(user, 0) + 1
        try:
            yield
        finally:
            self._open[user] -= 1
            if not self._open[user]:
                del self._open[user]
