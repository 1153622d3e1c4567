"""What every backend promises about remembered knowledge: rolling summaries, facts, tasks,
and the operator's reasoning audit and erasure.

Facts and tasks belong to the user, not to a conversation: the `Scope` still names the
conversation the request came from (`Forbidden` if it is someone else's), and every query
is bounded by its tenant and user.
"""

from __future__ import annotations

from typing import Protocol

from agentry_shared.contracts.facts import FactCategory, TaskStatus
from agentry_shared.contracts.scope import Scope

from agentry_memory.records import Fact, ReasoningStep, StoredMessage, Summary, Task


class KnowledgeStore(Protocol):
    async def summary(self, scope: Scope) -> Summary | None:
        """The conversation's latest rolling summary."""

    async def unsummarised(
        self, scope: Scope, after_turn: int, through_turn: int, max_tokens: int
    ) -> list[StoredMessage]:
        """Messages of the whole turns after_turn < t <= through_turn, oldest first, stopping
        before the first turn that would take the total past `max_tokens` (but always the
        first turn, so a huge turn cannot stall the summary)."""

    async def save_summary(self, scope: Scope, text: str, through_turn: int, tokens: int, now: float) -> bool:
        """Keep a summary of turns 1..through_turn; only ever moves forward (False if the
        kept one already covers as much: another replica got there first)."""

    async def remember_fact(
        self, scope: Scope, turn_id: str | None, text: str, category: FactCategory, now: float
    ) -> tuple[Fact, bool]:
        """Keep a fact of scope's user; True if new. A near-identical fact of the user
        (`facts.same_fact`) is refreshed instead: its wording, category, turn and
        `confirmed_at` become this call's."""

    async def recall_facts(self, scope: Scope, query: str, limit: int) -> list[Fact]:
        """The user's facts matching `query` best first (full-text over every conversation of
        the user, never another user's); with no searchable word, the last confirmed."""

    async def update_task(
        self, scope: Scope, turn_id: str | None, title: str, status: TaskStatus, progress: str, now: float
    ) -> tuple[Task, bool]:
        """Create or update the user's task of that title (near-identical titles are the same
        task); True if new. An empty `progress` keeps the kept one."""

    async def tasks(self, scope: Scope, include_done: bool, limit: int) -> list[Task]:
        """The user's tasks, most recently updated first."""

    async def reasoning_audit(self, tenant_id: str, user_id: str, turn_id: str) -> list[ReasoningStep]:
        """For operators only: a turn's reasoning by step. `NotFound` unless the turn is this
        tenant's and user's."""

    async def erase_user(self, tenant_id: str, user_id: str) -> dict[str, int]:
        """Delete everything about a user (conversations, turns, messages, frames, summaries,
        reasoning, tool calls, approvals, rate-limit counts, facts, tasks); how many of each."""

    async def sweep_reasoning(self, older_than: float) -> int:
        """Delete reasoning recorded before `older_than` (Unix time); returns how many."""
