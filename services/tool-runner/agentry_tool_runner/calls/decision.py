"""The exactly-once rules, as one pure function: what to do with a call given its claim.

Memory keeps one claim per (turn_id, call_id): `new` (we hold it now), `running` (claimed
by a runner that has not finished: alive, or dead holding it) or `done` (with the kept
result). The broker adds one fact: a delivery marked `redelivered` was handed out before
and never acked, i.e. the channel of the runner that had it died.

What may happen twice depends on the tool's side effect: a `read_only` or `idempotent`
tool is simply run again when in doubt; a `destructive` one never is. In doubt it is
refused with an error that says so, and the model decides what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from agentry_shared.contracts.errors import ToolErrorCode
from agentry_shared.contracts.memory import ToolCallClaimed
from agentry_shared.contracts.tools import SideEffect

Action = Literal["run", "reply_kept", "wait", "refuse"]

# Time a holder gets beyond the tool's own timeout (child start, clean-up, the complete RPC)
# before its claim counts as abandoned.
STALE_MARGIN_SECONDS = 5.0

# The error a refusal replies with; the model reads the message as-is.
REFUSALS: Final[dict[ToolErrorCode, str]] = {
    "interrupted": "the call may or may not have taken effect; a worker died while running it",
    "unavailable": "not run: the record of tool calls (memory) did not answer, and this tool must not run twice",
    "cancelled": "the turn was cancelled; the call was stopped",
    "deadline_exceeded": "the caller stopped waiting",
}


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str  # for logs and metrics
    # Record the outcome in memory (CompleteToolCall) before replying.
    keep: bool = False
    # For "refuse": the ToolCompleted error code (a key of REFUSALS).
    code: ToolErrorCode | None = None


def decide(
    claim: ToolCallClaimed | None,
    side_effect: SideEffect,
    *,
    redelivered: bool,
    stale_after: float,
    waited: float = 0.0,
) -> Decision:
    """`claim` None: memory did not answer. `waited`: seconds this runner has been polling,
    a floor under the claim's age should memory's clock disagree with ours."""
    repeatable = side_effect != "destructive"
    if claim is None:
        # Nothing can be kept or checked: run what is safe to run twice, refuse the rest.
        if repeatable:
            return Decision("run", "memory unavailable")
        return Decision("refuse", "memory unavailable", code="unavailable")
    if claim.state == "done":
        return Decision("reply_kept", "already done")
    if claim.state == "new":
        return Decision("run", "claimed", keep=True)
    if redelivered:
        why = "redelivered: its holder's channel died"
    elif max(claim.claimed_seconds_ago, waited) >= stale_after:
        why = "stale claim: its holder died"
    else:
        return Decision("wait", "held by another runner")
    if repeatable:
        return Decision("run", why, keep=True)
    return Decision("refuse", why, keep=True, code="interrupted")
