"""The model tokens a turn used, for the tokens-per-day budgets (`BUDGET_*_TOKENS_PER_DAY`).

The meter of each model request adds its tokens (the server's `usage`, else the estimate)
to the tally of the turn it runs in, a context variable the handler sets for the turn.
The tally goes to memory just before the turn's final frame, so the turn runs to its end
whatever it costs, and the next turn's admission already sees what this one used.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.frames import ServerFrame, TurnCompleted

from agentry_reasoner.ports import Events

log = logging.getLogger(__name__)


class TokenTally:
    def __init__(self) -> None:
        self.pending = 0


TURN_TOKENS: ContextVar[TokenTally | None] = ContextVar("turn_tokens", default=None)


def count_tokens(tokens: int) -> None:
    """Add a model request's tokens to the running turn's tally (none outside a turn)."""
    tally = TURN_TOKENS.get()
    if tally is not None:
        tally.pending += tokens


class UsageReporting:
    """`Events` that report the turn's tokens before its `turn.completed` / `turn.failed`.

    A report that fails is logged, never retried into the turn: a budget is not worth
    running the turn again. Tokens of an attempt that crashed before its end are lost."""

    def __init__(self, events: Events, tally: TokenTally, report: Callable[[int], Awaitable[object]]) -> None:
        self._events = events
        self._tally = tally
        self._report = report

    async def emit(self, frame: ServerFrame, *, hold: bool = False) -> None:
        if frame.type in ("turn.completed", "turn.failed"):
            await self._flush()
        await self._events.emit(frame, hold=hold)

    async def complete(self, frame: TurnCompleted, messages: list[ChatMessage], reasoning: Mapping[int, str]) -> None:
        await self._flush()
        await self._events.complete(frame, messages, reasoning)

    async def _flush(self) -> None:
        tokens, self._tally.pending = self._tally.pending, 0
        if tokens <= 0:
            return
        try:
            await self._report(tokens)
        except Exception:
            log.warning("model tokens not reported to memory", exc_info=True, extra={"tokens": tokens})
