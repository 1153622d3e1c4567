"""How messages read from a store become a window or a summary batch: the same rules for
every backend, fed one message at a time so a backend can stop reading early."""

from __future__ import annotations

from agentry_memory.store.records import StoredMessage, drop_orphan_tools


class Window:
    """Fed newest first: keeps messages while they fit in `limit` messages and `budget`
    tokens (the first one, this turn's user message, always), then says stop."""

    def __init__(self, limit: int, budget: int | None) -> None:
        self.limit = limit
        self.budget = budget
        self.newest_first: list[StoredMessage] = []
        self.count = 0
        self.used = 0
        self.left_out_turn = 0  # the newest turn with a message that did not fit

    def admit(self, turn_index: int, tokens: int) -> bool:
        """Count a message in if it fits; False (stop reading) once one does not. A backend
        that admits rows before parsing them hands the parsed ones to `take`."""
        over = self.budget is not None and self.used + tokens > self.budget
        if self.count and (self.count >= self.limit or over):
            self.left_out_turn = turn_index
            return False
        self.count += 1
        self.used += tokens
        return True

    def offer(self, message: StoredMessage) -> bool:
        """Keep `message` if it fits; False (stop reading) once one does not."""
        if not self.admit(message.turn_index, message.tokens):
            return False
        self.newest_first.append(message)
        return True

    def take(self, newest_first: list[StoredMessage]) -> None:
        """The messages `admit` let in (all of them, in the order admitted: newest first)."""
        self.newest_first = newest_first

    def messages(self) -> list[StoredMessage]:
        """Oldest first, not opening on tool results (those count as left out)."""
        oldest_first = self.newest_first[::-1]
        window = drop_orphan_tools(oldest_first)
        dropped = oldest_first[: len(oldest_first) - len(window)]
        if dropped:
            self.left_out_turn = max(self.left_out_turn, dropped[-1].turn_index)
        return window


class WholeTurns:
    """Fed oldest first: whole turns while their total stays within `max_tokens` (the first
    turn always, so one huge turn cannot stall the summary)."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.taken: list[StoredMessage] = []
        self.used = 0
        self.turn: list[StoredMessage] = []
        self.done = False

    def offer(self, message: StoredMessage) -> bool:
        """False (stop reading) once a whole turn did not fit."""
        if self.turn and self.turn[0].turn_index != message.turn_index:
            self._close_turn()
            if self.done:
                return False
        self.turn.append(message)
        return True

    def result(self) -> list[StoredMessage]:
        """What was taken, the turn in hand included if it fits (call at the end of input)."""
        if self.turn and not self.done:
            self._close_turn()
        return self.taken

    def _close_turn(self) -> None:
        cost = sum(m.tokens for m in self.turn)
        if self.taken and self.used + cost > self.max_tokens:
            self.done = True
        else:
            self.taken += self.turn
            self.used += cost
        self.turn = []
