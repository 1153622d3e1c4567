"""The log throttle and the JSON formatter: what reaches the log when lines repeat."""

from __future__ import annotations

import json
import logging
from contextlib import suppress

from agentry_shared.logs import JsonFormatter, Throttle, bind_context


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(msg: str = "frame handling failed", level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("agentry_gateway.connection", level, __file__, 1, msg, None, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_the_same_line_passes_a_burst_per_interval_then_says_how_many_were_dropped() -> None:
    clock = Clock()
    throttle = Throttle(10.0, burst=5, clock=clock)
    passed = [throttle.filter(record()) for _ in range(1000)]
    assert passed == [True] * 5 + [False] * 995
    clock.now += 10.0
    later = record()
    assert throttle.filter(later)
    assert later.suppressed == 995  # type: ignore[attr-defined]
    clock.now += 10.0
    quiet = record()
    assert throttle.filter(quiet) and not hasattr(quiet, "suppressed")


def test_the_same_failure_of_two_turns_moments_apart_is_logged_for_each() -> None:
    """Before: one line per interval, so the second turn's failure had no line with its
    `turn_id` (only a count on a later line), and its operator found nothing."""
    clock = Clock()
    throttle = Throttle(10.0, clock=clock)
    first, second = record("turn could not run", logging.ERROR), record("turn could not run", logging.ERROR)
    assert throttle.filter(first)
    clock.now += 1.0
    assert throttle.filter(second)


def test_keys_messages_and_levels_are_throttled_apart() -> None:
    throttle = Throttle(10.0, burst=1, clock=Clock())
    assert throttle.filter(record(throttle_key="alice"))
    assert throttle.filter(record(throttle_key="bob"))
    assert not throttle.filter(record(throttle_key="alice"))
    assert throttle.filter(record("another message"))
    assert throttle.filter(record(level=logging.ERROR))


def test_routine_info_lines_are_never_throttled() -> None:
    throttle = Throttle(10.0, burst=1, clock=Clock())
    assert all(throttle.filter(record("turn published", logging.INFO)) for _ in range(100))
    assert throttle.filter(record("refused", logging.INFO, throttle_key="u"))
    assert not throttle.filter(record("refused", logging.INFO, throttle_key="u"))


def test_memory_stays_bounded() -> None:
    clock = Clock()
    throttle = Throttle(1.0, clock=clock, max_keys=10)
    for user in range(100):
        throttle.filter(record(throttle_key=str(user)))
    assert len(throttle._shown) <= 10


def test_a_lone_surrogate_in_a_line_is_escaped_not_a_crash() -> None:
    line = JsonFormatter("gateway").format(record("bad id", id="\ud800"))
    line.encode()
    assert json.loads(line)["id"] == "\ud800"


def failure_line(exc: BaseException) -> dict[str, object]:
    """How the line that reports `exc` (`log.exception(...)`) reads."""
    made = logging.LogRecord("agentry_x", logging.ERROR, __file__, 1, "task failed", None, (type(exc), exc, None))
    line: dict[str, object] = json.loads(JsonFormatter("x").format(made))
    return line


def raised_in_a_turn() -> BaseException:
    try:
        with bind_context(conversation_id="c1"), bind_context(turn_id="t1"):
            raise RuntimeError("boom")
    except RuntimeError as exc:
        return exc
    raise AssertionError("not raised")


def test_a_failure_reported_outside_its_turn_still_names_the_turn() -> None:
    """Before: the line written by a middleware, a done callback or a caller's `except`,
    out of the block that bound the ids, had no `turn_id`: the turn's failure could not be
    found by its id."""
    line = failure_line(raised_in_a_turn())
    assert (line["turn_id"], line["conversation_id"]) == ("t1", "c1")


def test_the_ids_where_the_line_is_written_come_first() -> None:
    exc = raised_in_a_turn()
    with bind_context(turn_id="t2"):
        line = failure_line(exc)
    assert (line["turn_id"], line["conversation_id"]) == ("t2", "c1")


def test_one_exception_object_raised_again_in_another_turn_names_that_turn() -> None:
    exc = raised_in_a_turn()
    with suppress(RuntimeError), bind_context(conversation_id="c2"), bind_context(turn_id="t2"):
        raise exc
    assert (failure_line(exc)["turn_id"], failure_line(exc)["conversation_id"]) == ("t2", "c2")
