"""Per-socket token bucket: a client may burst briefly but not sustain more than its rate.

Time is passed in, so the bucket is deterministic under test.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.capacity = burst
        self._tokens = burst
        self._at = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until `allow` will take a token (0 if it would now)."""
        tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)
