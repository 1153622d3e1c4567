"""A bounded set of recently cancelled turns, for services that hear cancels on the control
exchange before (or without) holding the turn."""

from __future__ import annotations

from collections import OrderedDict


class RecentTurns:
    """Turns cancelled lately, so work of one that arrives after its cancel is not done.
    Bounded: turn ids are never reused, and late work of an old turn is unlikely."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._turns: OrderedDict[str, None] = OrderedDict()

    def add(self, turn_id: str) -> None:
        self._turns[turn_id] = None
        self._turns.move_to_end(turn_id)
        while len(self._turns) > self.limit:
            self._turns.popitem(last=False)

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self._turns
