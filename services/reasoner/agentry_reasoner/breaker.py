"""A circuit breaker for the model: while it is down, turns fail fast instead of waiting.

closed --N failures in a row--> open --cool-down--> half-open --success--> closed
                                  ^                    |
                                  +------failure-------+
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._cooldown = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self._cooldown else "open"

    def allow(self) -> bool:
        """May a call go to the model now? In half-open, only one trial call at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    @property
    def closed(self) -> bool:
        return self._opened_at is None

    def abandoned(self) -> None:
        """The call ended without a verdict (cancelled): let another trial through."""
        self._trial_running = False

    def succeeded(self) -> None:
        self._failures, self._opened_at, self._trial_running = 0, None, False

    def failed(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()
