"""What every storage backend promises, independent of how it stores: the `Store`
protocols, the records they hand back and the errors that are answers.

Every method takes the caller's `Scope` and answers only for the conversation that scope
owns: `Forbidden` if another tenant or user owns it, `NotFound` if it (or the turn) does
not exist. Every write is idempotent, because the broker delivers at least once. The
backends, `sqlite.SqliteStore` and `mongo.MongoStore`, have one module per concern, with
the same names in both.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.facts import FactCategory, TaskStatus
from agentry_shared.contracts.frames import ConversationSummary
from agentry_shared.contracts.memory import TurnBudgets, TurnState
from agentry_shared.contracts.scope import Scope

from agentry_memory.store.errors import Erased, Forbidden, Invalid, LimitReached, NotFound, StoreRefusal
from agentry_memory.store.records import (
    FINISHED,
    TOKEN_WINDOW_SECONDS,
    Admission,
    ApprovalAnswer,
    ApprovalRecord,
    EncodedFrame,
    Fact,
    ReasoningStep,
    StoredMessage,
    Summary,
    Task,
    TokenTaken,
    ToolCall,
    TurnContext,
    TurnStatus,
    conversation_title,
    drop_orphan_tools,
    final_state,
    token_window,
)

__all__ = [
    "FINISHED",
    "TOKEN_WINDOW_SECONDS",
    "Admission",
    "ApprovalAnswer",
    "ApprovalRecord",
    "ConversationStore",
    "EncodedFrame",
    "Erased",
    "Fact",
    "Forbidden",
    "Invalid",
    "KnowledgeStore",
    "LimitReached",
    "NotFound",
    "ReasoningStep",
    "Store",
    "StoreRefusal",
    "StoredMessage",
    "Summary",
    "Task",
    "TokenTaken",
    "ToolCall",
    "TurnContext",
    "TurnStatus",
    "conversation_title",
    "drop_orphan_tools",
    "final_state",
    "token_window",
]


class ConversationStore(Protocol):
    """The conversation log, turns, tool calls and approvals."""

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect or create; safe to call on a store that already holds data."""

    async def close(self) -> None: ...

    async def claim_conversation(self, scope: Scope, *, create: bool = True, max_conversations: int = 0) -> bool:
        """True if this call created the conversation for scope's tenant and user.

        `create=False`: only confirm it is theirs (`NotFound` if it does not exist; nothing
        is created). Creating it when the user already has `max_conversations` (> 0) is
        `LimitReached` (MongoDB counts without a transaction: racing creations may pass
        the limit by a few)."""

    async def abandon_conversation(self, scope: Scope) -> bool:
        """Delete the scope's conversation if no turn is in it (True: it is gone, or never
        was); one with a turn is kept (False). `Forbidden` if it is someone else's. For a
        conversation the gateway created for a message it then refused: checking for turns
        and deleting are one step, so a turn that comes in meanwhile is never orphaned."""

    async def list_conversations(self, tenant_id: str, user_id: str, limit: int) -> list[ConversationSummary]:
        """The user's conversations (never another tenant's or user's), the most recently
        active first (`last_activity_at`: the latest of the creation, the newest turn's
        start and its end; ties by id, descending), at most `limit`; each titled by its
        first user message (`conversation_title`)."""

    async def add_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> int:
        """Record a turn (state `queued`) and its user message (position 0); returns its
        turn_index (1, 2, ...).

        Creates the conversation if the log brings a turn for an unclaimed one; a turn_id
        seen before returns its first index and changes nothing. `accepted_at` (Unix time
        the gateway accepted the turn): `Erased`, and nothing stored, if the user was erased
        at or after it (`erase_user`), even by an erasure running meanwhile.
        """

    async def add_and_begin_turn(
        self, scope: Scope, turn_id: str, user_message: ChatMessage, *, accepted_at: float | None = None
    ) -> bool:
        """`add_turn`, and if that created the turn and every earlier turn of the
        conversation has finished (none `queued` or `running`), begin it as `begin_turn`
        would: `running`, attempt 1. True if it did (memory then forwards the turn begun,
        with its context); False changes nothing more than `add_turn` (a turn seen before,
        or one that must wait for an earlier turn: its reasoner sends `BeginTurn`)."""

    async def enter_turn(
        self,
        scope: Scope,
        turn_id: str,
        user_message: ChatMessage,
        accepted: tuple[str, EncodedFrame],
        *,
        begin: bool,
        accepted_at: float | None = None,
    ) -> tuple[bool, tuple[int, bool]]:
        """A turn's way into the log: `add_turn` (with `begin`, `add_and_begin_turn`), then
        `append_frames([accepted])`, its `message.accepted` (event id, frame); `Erased` as
        `add_turn`, with no frame stored either. Returns
        (begun, (seq, created)). One transaction where the backend has them (SQLite: one
        commit instead of two on every turn's path); MongoDB writes the turn first, then the
        frame, each safe to repeat. A refused turn (`StoreRefusal`) stores no frame."""

    async def append_messages(self, scope: Scope, turn_id: str, messages: list[ChatMessage]) -> None:
        """Make the turn's messages after the user's exactly `messages` (positions 1..n):
        the list is the turn's full checkpoint, so positions beyond n are dropped."""

    async def context(self, scope: Scope, turn_id: str, limit: int, max_tokens: int | None = None) -> TurnContext:
        """`window`: the most recent messages of the earlier turns plus this turn's user
        message, oldest first, ordered by turn then position whatever order they were stored
        in, never starting with a tool result whose call was cut off: at most `limit` of them
        and, when `max_tokens` is given, at most that many tokens together with `summary`
        (this turn's user message is always there, even alone over the budget).
        `produced`: this turn's positions 1..n, all of them. `summary`: the conversation's
        rolling summary. `left_out_turn`: the newest turn with a message left out."""

    async def begin_turn(self, scope: Scope, turn_id: str) -> tuple[int, TurnState]:
        """Count an attempt (1 on the first call) and say how the reasoner must go on:
        a finished turn keeps and returns its final state; a turn with a cancel request
        returns `cancelled` (its state changes only when its turn.failed is sequenced);
        otherwise it becomes and returns `running`."""

    async def turn_status(self, scope: Scope, turn_id: str) -> TurnStatus: ...

    async def earlier_turn_running(self, scope: Scope, turn_id: str) -> bool:
        """True while a turn of the conversation older than `turn_id` is `running`: its
        end (and, with it, its answer) is not sequenced yet."""

    async def cancel_turn(self, tenant_id: str, user_id: str, turn_id: str) -> TurnStatus:
        """Record a cancel request for an unfinished turn, found by turn_id alone; returns
        the status from before the request. `Forbidden` if another tenant or user owns it."""

    async def claim_tool_call(self, scope: Scope, turn_id: str, call_id: str, tool: str) -> ToolCall:
        """The first claim of (turn, call_id) records it as running and answers `new`;
        later claims answer `running` (with the first claim's age) or `done` (with the result)."""

    async def complete_tool_call(self, scope: Scope, turn_id: str, call_id: str, result: dict[str, Any]) -> None:
        """Keep the call's result; a second completion keeps the first result."""

    async def append_frame(self, scope: Scope, event_id: str, frame: EncodedFrame | dict[str, Any]) -> tuple[int, bool]:
        """Give the frame the conversation's next seq and keep it (with `seq` set): an
        `EncodedFrame` is kept as `frame.with_seq(seq)`, byte for byte (a dict is encoded).

        Returns (seq, True); for an event_id seen before, (its first seq, False) and nothing
        is stored. Seqs of a conversation are 1, 2, 3, ... without gaps, and never reused,
        even after old frames expired. A `turn.completed` / `turn.failed` frame for a turn
        of this conversation that has not finished yet finishes it (`final_state`), in the
        same transaction; a frame naming an unknown turn is kept and finishes nothing.
        """

    async def append_frames(
        self, scope: Scope, frames: list[tuple[str, EncodedFrame | dict[str, Any]]]
    ) -> list[tuple[int, bool]]:
        """`append_frame` for each (event_id, frame), in order, in one commit where the
        backend has transactions (the embedded store): one fsync for a batch of frames."""

    async def frames_after(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored frames with seq > after_seq, ascending, at most `limit`, without gaps."""

    async def sweep_frames(self, older_than: float) -> int:
        """Delete frames stored before `older_than` (Unix time); returns how many.

        Deletes only a prefix of each conversation's frames (everything up to its newest
        expired frame), so what is kept never has a gap, whatever the clock did; and never
        a conversation's last frame, so `frames_after` an older seq is never empty: the
        first frame it returns shows the gap.
        """

    async def request_approval(
        self, scope: Scope, turn_id: str, call_id: str, tool: str, arguments: dict[str, Any], expires_at: float
    ) -> None:
        """Keep a pending approval of (conversation, turn, call_id) with the digest of its
        arguments (`frames.arguments_sha256`); asking again changes nothing."""

    async def approval(self, scope: Scope, turn_id: str, call_id: str, now: float) -> ApprovalRecord | None:
        """The approval as it stands, with the digest of the arguments it was asked for
        (`pending` past its `expires_at` reads `expired`); None if never asked."""

    async def decide_approval(self, answer: ApprovalAnswer, now: float) -> ApprovalRecord:
        """Decide the approval of `answer.call_id` in turn `answer.turn_id`, and nothing else.

        `NotFound` if the user has none there (or it is not of `answer.conversation_id`),
        even if another user has one (nothing is revealed). An answer whose `args_sha256`
        is not the approval's changes nothing: the record comes back as it is, with its own
        digest. Otherwise a pending one becomes `approved` / `denied` (`changed`), or
        `expired` past `expires_at`; a decided one is returned as it is."""

    async def take_tool_token(self, scope: Scope, tool: str, per_minute: int, now: float) -> TokenTaken:
        """Count a call of `tool` by scope's tenant and user in the current fixed window
        (`token_window`), atomically, for every replica; refused past `per_minute`, with the
        seconds until the window ends. `per_minute` <= 0 is no limit (nothing is counted)."""

    async def admit_turn(self, scope: Scope, turn_id: str, budgets: TurnBudgets, now: float) -> Admission:
        """Admit one more turn of scope's user if the user and the tenant are within
        `budgets` (0: off): tokens used today (`budget_exceeded`, until the UTC day ends),
        admitted turns not finished, turns admitted this minute (`rate_limited`). Admitted,
        it counts for every replica; a `turn_id` admitted before is admitted again and
        counted once. A turn counts as running until its final frame is sequenced, one the
        log has not recorded yet for `ADMISSION_GRACE_SECONDS`. MongoDB checks and counts
        without a transaction: racing admissions may pass a budget by a few."""

    async def record_usage(self, scope: Scope, tokens: int, now: float) -> None:
        """Count model tokens against scope's user's and tenant's tokens of the day."""

    async def record_reasoning(self, scope: Scope, turn_id: str, step: int, text: str) -> None:
        """Keep a step's reasoning for audit (replacing an earlier record of the same step)."""

    async def reasoning(self, scope: Scope, turn_id: str) -> list[str]:
        """A turn's reasoning by step: for audits only, never for a user-facing reply."""


class KnowledgeStore(Protocol):
    """Remembered knowledge: rolling summaries, facts and tasks (the user's, not one
    conversation's: `Scope` still names the conversation asking, `Forbidden` if it is someone
    else's), and the operator's reasoning audit and erasure."""

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
        (`knowledge.same_fact`) is refreshed instead: its wording, category, turn and
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
        reasoning, tool calls, approvals, rate-limit and turn-budget counts, facts, tasks);
        how many of each. Records the erasure (tenant, user, time: all that is kept), so a
        turn accepted before it and stored after it is refused (`add_turn`)."""

    async def erased_at(self, tenant_id: str, user_id: str) -> float | None:
        """When the user was last erased (Unix time); None if never."""

    async def sweep_reasoning(self, older_than: float) -> int:
        """Delete reasoning recorded before `older_than` (Unix time); returns how many."""


class Store(ConversationStore, KnowledgeStore, Protocol):
    """Everything a backend implements: the conversation store and the remembered knowledge."""
