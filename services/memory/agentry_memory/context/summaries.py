"""The rolling summary: turns that left the window are summarised by the model, in the
background, so a conversation keeps its thread without carrying its whole history.

`GetContext` only schedules a refresh and answers with the summary it has: a slow or
failing model never delays a turn. A refresh waits until the unsummarised turns outside
the window reach `trigger_tokens` (one model call per stretch of conversation, not per
turn), then folds them, oldest first in batches of whole turns, into the previous summary
(the summarisation prompt contract of services/offline-model/README.md). At most one
refresh per conversation runs in a process; between replicas, the store keeps whichever
summary covers more turns (`save_summary` only moves forward).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope

from agentry_memory.context.tokens import clip_to_tokens, message_tokens
from agentry_memory.metrics import SUMMARIES
from agentry_memory.store import Store
from agentry_memory.store.records import StoredMessage, Summary, TurnContext

log = logging.getLogger(__name__)

SUMMARY_HEADER = "Summary of the earlier conversation (older turns, no longer shown):"
LINE_CHARS = 1000  # one message in the transcript: enough for its gist
RETRY_AFTER_SECONDS = 30.0  # after a failed model call, this conversation waits


class SummaryModel(Protocol):
    async def summarize(self, previous: str | None, transcript: str) -> str:
        """A new summary of `transcript` that keeps what `previous` (if any) held."""


def summary_message(text: str) -> ChatMessage:
    """How a summary enters a context; `Summary.tokens` is this message's cost."""
    return ChatMessage(role="system", content=f"{SUMMARY_HEADER}\n{text}")


def transcript(messages: list[StoredMessage]) -> str:
    """One line per message, `role: text` (the offline model's transcript form)."""
    lines = []
    for stored in messages:
        message = stored.message
        text = " ".join((message.content or "").split())
        if not text and message.tool_calls:
            names = [str(call.get("function", {}).get("name", "?")) for call in message.tool_calls]
            text = f"(called {', '.join(names)})"
        if len(text) > LINE_CHARS:
            text = text[: LINE_CHARS - 1] + "…"
        lines.append(f"{message.role}: {text}")
    return "\n".join(lines)


class Summarizer:
    def __init__(
        self,
        store: Store,
        model: SummaryModel,
        *,
        trigger_tokens: int,
        batch_tokens: int,
        max_summary_tokens: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.model = model
        self.trigger_tokens = trigger_tokens
        self.batch_tokens = max(batch_tokens, trigger_tokens)
        self.max_summary_tokens = max_summary_tokens
        self.clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}
        self._resting_until: dict[str, float] = {}

    def schedule(self, scope: Scope, context: TurnContext) -> None:
        """Start a refresh if turns left the window unsummarised; never waits for it."""
        through = context.summary.through_turn if context.summary else 0
        key = scope.conversation_id
        if context.left_out_turn <= through or key in self._running:
            return
        if self._resting_until.get(key, 0.0) > self.clock():
            return
        task = asyncio.create_task(self._guarded(scope, context.summary, context.left_out_turn))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def wait_idle(self) -> None:
        """Until every scheduled refresh ended (tests and benchmarks)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _guarded(self, scope: Scope, summary: Summary | None, left_out_turn: int) -> None:
        try:
            await self.refresh(scope, summary, left_out_turn)
        except asyncio.CancelledError:
            raise
        except Exception:
            SUMMARIES.labels(outcome="failed").inc()
            self._resting_until[scope.conversation_id] = self.clock() + RETRY_AFTER_SECONDS
            log.warning("summary refresh failed; the window goes on without it", exc_info=True)
        else:
            self._resting_until.pop(scope.conversation_id, None)

    async def refresh(self, scope: Scope, summary: Summary | None, left_out_turn: int) -> Summary | None:
        """Fold the unsummarised turns up to `left_out_turn` into the summary, batch by batch,
        once they reach the trigger; the summary kept at the end."""
        through = summary.through_turn if summary else 0
        while through < left_out_turn:
            batch = await self.store.unsummarised(scope, through, left_out_turn, self.batch_tokens)
            if not batch:
                break
            pending = sum(m.tokens for m in batch)
            if pending < self.trigger_tokens and batch[-1].turn_index >= left_out_turn:
                break  # not worth a model call yet
            started = time.perf_counter()
            text = await self.model.summarize(summary.text if summary else None, transcript(batch))
            text = clip_to_tokens(" ".join(text.split()), self.max_summary_tokens)
            new_through = batch[-1].turn_index
            tokens = message_tokens(summary_message(text))
            if not await self.store.save_summary(scope, text, new_through, tokens, self.clock()):
                SUMMARIES.labels(outcome="superseded").inc()
                return await self.store.summary(scope)  # another replica moved it further
            SUMMARIES.labels(outcome="saved").inc()
            summary, through = Summary(text, new_through, tokens, self.clock()), new_through
            log.info(
                "summary refreshed",
                extra={
                    "conversation_id": scope.conversation_id,
                    "through_turn": through,
                    "summarised_tokens": pending,
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
        return summary
