"""A turn's context: the hybrid of a sliding window, the rolling summary and recalled facts.

Everything `messages` carries fits in `window_tokens` (context/tokens.py's estimate): the summary
and the window share `window_tokens - knowledge_tokens`, the recalled facts and open tasks
get `knowledge_tokens` (an eighth). The only exception is this turn's user message alone
over the budget: it is always sent, whole. The summary is refreshed in the background
(summaries.py); what the assembler returns never waits for the model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.scope import Scope

from agentry_memory.context.summaries import Summarizer, summary_message
from agentry_memory.context.tokens import MESSAGE_OVERHEAD_TOKENS
from agentry_memory.store import Store
from agentry_memory.store.knowledge import knowledge_block, search_terms
from agentry_memory.store.records import Fact, Task

KNOWLEDGE_SHARE = 8  # recalled facts and tasks get 1/8 of the budget


@dataclass(frozen=True)
class Assembled:
    messages: list[ChatMessage]  # summary, facts, then the window ending with the user message
    produced: list[ChatMessage]


class ContextAssembler:
    def __init__(
        self,
        store: Store,
        *,
        window_messages: int,
        window_tokens: int | None = None,
        recall_facts: int = 0,
        recall_tasks: int = 0,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.store = store
        self.window_messages = window_messages
        self.window_tokens = window_tokens
        self.recall_facts = recall_facts
        self.recall_tasks = recall_tasks
        self.summarizer = summarizer
        recalls = recall_facts > 0 or recall_tasks > 0
        self.knowledge_tokens = window_tokens // KNOWLEDGE_SHARE if window_tokens and recalls else 0

    async def assemble(self, scope: Scope, turn_id: str, user_text: str | None = None) -> Assembled:
        """`user_text`: the turn's own message, when the caller has it: the window and the
        knowledge are then read together instead of one after the other."""
        budget = None if self.window_tokens is None else self.window_tokens - self.knowledge_tokens
        window = self.store.context(scope, turn_id, self.window_messages, budget)
        if user_text is None:
            context = await window
            facts, tasks = await asyncio.gather(
                self._facts(scope, context.messages[-1].content or ""), self._tasks(scope)
            )
        else:
            # Three reads started in one pass: a store with one thread takes them as one job.
            context, facts, tasks = await asyncio.gather(window, self._facts(scope, user_text), self._tasks(scope))
        block = self._knowledge(facts, tasks)
        if self.summarizer is not None:
            self.summarizer.schedule(scope, context)
        head: list[ChatMessage] = []
        if context.summary is not None:
            head.append(summary_message(context.summary.text))
        if block is not None:
            head.append(ChatMessage(role="system", content=block))
        return Assembled(messages=head + context.messages, produced=context.produced)

    def _knowledge(self, facts: list[Fact], tasks: list[Task]) -> str | None:
        """The facts most relevant to the new message (full-text; none if it has no
        searchable word) and the user's open tasks, in the knowledge budget."""
        if not facts and not tasks:
            return None
        limit = self.knowledge_tokens - MESSAGE_OVERHEAD_TOKENS if self.window_tokens else 10**9
        return knowledge_block(facts, tasks, limit)

    async def _facts(self, scope: Scope, user_text: str) -> list[Fact]:
        if self.recall_facts and search_terms(user_text):
            return await self.store.recall_facts(scope, user_text, self.recall_facts)
        return []

    async def _tasks(self, scope: Scope) -> list[Task]:
        if self.recall_tasks:
            return await self.store.tasks(scope, include_done=False, limit=self.recall_tasks)
        return []
