"""The exactly-once rules: claim state x side effect x redelivered x memory unavailable."""

from __future__ import annotations

import pytest
from agentry_shared.contracts.memory import ToolCallClaimed
from agentry_shared.contracts.tools import SideEffect
from agentry_tool_runner.calls.decision import REFUSALS, Decision, decide

STALE_AFTER = 15.0
REPEATABLE: list[SideEffect] = ["read_only", "idempotent"]
ALL: list[SideEffect] = [*REPEATABLE, "destructive"]


def claim(state: str, age: float = 0.0) -> ToolCallClaimed:
    result = {"call_id": "c", "tool": "t", "ok": True, "output": "kept"} if state == "done" else None
    return ToolCallClaimed.model_validate({"state": state, "claimed_seconds_ago": age, "result": result})


def verdict(decision: Decision) -> tuple[str, bool, str | None]:
    return decision.action, decision.keep, decision.code


# (claim, side effect, redelivered) -> (action, keep the outcome in memory, refusal code)
TABLE: list[tuple[ToolCallClaimed | None, list[SideEffect], bool, tuple[str, bool, str | None]]] = [
    # Memory did not answer: run what is safe to run twice, without a record; refuse the rest.
    (None, REPEATABLE, False, ("run", False, None)),
    (None, REPEATABLE, True, ("run", False, None)),
    (None, ["destructive"], False, ("refuse", False, "unavailable")),
    (None, ["destructive"], True, ("refuse", False, "unavailable")),
    # First claim: ours. A redelivered one too: its first holder died before claiming.
    (claim("new"), ALL, False, ("run", True, None)),
    (claim("new"), ALL, True, ("run", True, None)),
    # Done: the kept result, never a second run.
    (claim("done"), ALL, False, ("reply_kept", False, None)),
    (claim("done"), ALL, True, ("reply_kept", False, None)),
    # Held by a runner that may be alive: wait for it.
    (claim("running", age=1.0), ALL, False, ("wait", False, None)),
    (claim("running", age=STALE_AFTER - 0.01), ALL, False, ("wait", False, None)),
    # Its holder died (stale claim, or this very request redelivered): again if harmless, else refused.
    (claim("running", age=STALE_AFTER), REPEATABLE, False, ("run", True, None)),
    (claim("running", age=STALE_AFTER), ["destructive"], False, ("refuse", True, "interrupted")),
    (claim("running", age=1.0), REPEATABLE, True, ("run", True, None)),
    (claim("running", age=1.0), ["destructive"], True, ("refuse", True, "interrupted")),
]


@pytest.mark.parametrize(
    ("state", "side_effect", "redelivered", "expected"),
    [(c, side, redelivered, expected) for c, sides, redelivered, expected in TABLE for side in sides],
)
def test_decision_table(
    state: ToolCallClaimed | None, side_effect: SideEffect, redelivered: bool, expected: tuple[str, bool, str | None]
) -> None:
    decision = decide(state, side_effect, redelivered=redelivered, stale_after=STALE_AFTER)
    assert verdict(decision) == expected


def test_every_cell_of_the_table_is_covered() -> None:
    cells = {
        (c.state if c else "unavailable", side, redelivered) for c, sides, redelivered, _ in TABLE for side in sides
    }
    assert len(cells) == 4 * 3 * 2


@pytest.mark.parametrize("side_effect", ALL)
def test_waiting_long_enough_counts_as_stale_whatever_memory_says(side_effect: SideEffect) -> None:
    young = claim("running", age=0.5)
    assert decide(young, side_effect, redelivered=False, stale_after=STALE_AFTER, waited=5).action == "wait"
    late = decide(young, side_effect, redelivered=False, stale_after=STALE_AFTER, waited=STALE_AFTER)
    assert late.action == ("refuse" if side_effect == "destructive" else "run")


def test_every_refusal_has_a_message() -> None:
    codes = {decide(c, side, redelivered=r, stale_after=STALE_AFTER).code for c, sides, r, _ in TABLE for side in sides}
    assert codes - {None} <= set(REFUSALS)
