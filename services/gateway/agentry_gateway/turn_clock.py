"""How long a client waits: from the turn's publish to its first `message.delta`, and to
its terminal frame, measured where the client's frames leave (the fanout).

Only turns this gateway accepted are timed, and only while one of its sockets follows the
conversation; a turn whose end never passes here (the client went to another replica) is
forgotten after `max_age_s`, and at most `limit` turns are held.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable

from agentry_shared.contracts.errors import TurnFailureCode, codes

from agentry_gateway import metrics

_FAILURE_CODES = codes(TurnFailureCode)
_WATCHED = frozenset({"message.delta", "turn.completed", "turn.failed"})


class TurnClock:
    def __init__(
        self, *, limit: int = 10_000, max_age_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._started: OrderedDict[str, float] = OrderedDict()
        self._answered: set[str] = set()  # turns whose first delta was seen
        self._limit, self._max_age_s, self._clock = limit, max_age_s, clock

    def accepted(self, turn_id: str) -> None:
        now = self._clock()
        self._started[turn_id] = now
        while self._started and (
            len(self._started) > self._limit or now - next(iter(self._started.values())) > self._max_age_s
        ):
            old, _ = self._started.popitem(last=False)
            self._answered.discard(old)

    def saw(self, frame_type: str, body: bytes) -> None:
        """A frame on its way to clients; times the turn if it is one of ours."""
        if not self._started or frame_type not in _WATCHED:
            return
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return
        turn_id = doc.get("turn_id") if isinstance(doc, dict) else None
        started = self._started.get(turn_id) if isinstance(turn_id, str) else None
        if started is None or not isinstance(turn_id, str):
            return
        elapsed = self._clock() - started
        if frame_type == "message.delta":
            if turn_id not in self._answered:
                self._answered.add(turn_id)
                metrics.TIME_TO_FIRST_TOKEN.observe(elapsed)
            return
        metrics.TURN_DURATION.labels(_outcome(frame_type, doc)).observe(elapsed)
        del self._started[turn_id]
        self._answered.discard(turn_id)


def _outcome(frame_type: str, doc: dict[str, object]) -> str:
    if frame_type == "turn.completed":
        return "completed"
    error = doc.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code in _FAILURE_CODES else "internal"


# One per process: the intake starts the clock, the fanout stops it.
TURN_CLOCK = TurnClock()
