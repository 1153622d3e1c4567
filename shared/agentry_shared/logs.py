"""JSON-lines logging with the ids of the work in hand (turn, conversation) on every line.

Handlers bind ids once with `bind_context`; every log call below them carries the ids,
so an operator can follow one turn across services with a single filter on `turn_id`.

Repeated warnings and errors are throttled (`Throttle`): a client repeating a bad frame,
or a peer failing a thousand times a second, costs a few lines per interval and a count.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

from agentry_shared.tracing import log_ids

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("log_context", default=None)
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


_EXCEPTION_IDS = "_agentry_log_ids"


@contextmanager
def bind_context(**ids: str | None) -> Iterator[None]:
    """Attach ids (turn_id, conversation_id, ...) to every log line in this block, and to
    an exception that leaves it: the line that reports it is often written out of the
    block (a middleware, a done callback, a caller's `except`), and still names the turn."""
    merged = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    except BaseException as exc:
        # The innermost block's ids are the most precise, and an outer block's are a part
        # of them; ids that are not (one exception object raised again in another turn, as
        # some libraries do with a stored error) are replaced.
        stored = getattr(exc, _EXCEPTION_IDS, None)
        if not (isinstance(stored, dict) and merged.items() <= stored.items()):
            with suppress(AttributeError, TypeError):  # an exception type without attributes
                setattr(exc, _EXCEPTION_IDS, merged)
        raise
    finally:
        _context.reset(token)


def bound_id(name: str) -> str | None:
    """The id `name` bound around this code (None if none is): for a request that hands it
    on, so the server's log lines carry it too (`tracing.model_headers`)."""
    return (_context.get() or {}).get(name)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_exception_ids(record),
            **(_context.get() or {}),
            **log_ids(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False)
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate (from a client's JSON): escaped, never a crash
            text = json.dumps(line)
        return text


def _exception_ids(record: logging.LogRecord) -> dict[str, str]:
    """The ids bound where the record's exception was raised (`bind_context`); the ids
    bound where the line is written take precedence."""
    exc = record.exc_info[1] if record.exc_info else None
    ids = getattr(exc, _EXCEPTION_IDS, None)
    return ids if isinstance(ids, dict) else {}


ThrottleKey = tuple[str, int, str, str | None]


class Throttle(logging.Filter):
    """The same line at most `burst` times per `seconds`; the next one shown carries
    `suppressed`, how many were dropped since. A burst, not one: the same failure of two
    turns a second apart (each line with its own `turn_id`) must both be findable by the
    turn's id; a flood still costs a few lines per interval.

    "The same line" is logger, level, message template (the `msg` before `%` arguments)
    and the record's `throttle_key` extra, if any (say, a user id: one noisy user then
    does not hide another's lines). Only warnings and worse are throttled, and records
    that bring a `throttle_key`: routine INFO lines (one per turn) always pass.
    """

    def __init__(
        self,
        seconds: float = 10.0,
        *,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        # key -> (the interval's start, lines shown in it, lines suppressed since the last shown)
        self._shown: dict[ThrottleKey, tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        throttle_key = getattr(record, "throttle_key", None)
        if record.levelno < logging.WARNING and throttle_key is None:
            return True
        key = (record.name, record.levelno, str(record.msg), None if throttle_key is None else str(throttle_key))
        now = self._clock()
        start, shown, suppressed = self._shown.get(key, (now, 0, 0))
        if now - start >= self.seconds:
            start, shown = now, 0
        if shown >= self.burst:
            self._shown[key] = (start, shown, suppressed + 1)
            return False
        if suppressed:
            record.suppressed = suppressed
        self._shown[key] = (start, shown + 1, 0)
        if len(self._shown) > self._max_keys:
            self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        """Bounded memory: drop keys whose interval has passed (their counts are lost)."""
        self._shown = {k: v for k, v in self._shown.items() if now - v[0] < self.seconds}
        if len(self._shown) > self._max_keys:
            self._shown.clear()


def setup_logging(service: str, level: str = "INFO", *, throttle_seconds: float = 10.0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(Throttle(throttle_seconds))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    log_uncaught(service)
    logging.captureWarnings(True)
    root.setLevel(level.upper())
    # Library chatter at INFO would drown the turn logs.
    for noisy in ("aio_pika", "aiormq", "httpx", "httpx2", "openai", "websockets", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_uncaught(service: str) -> None:
    """A crash (an exception nobody caught, in the main thread or another) is a JSON line
    too, like every other line on stderr: a log shipper never sees a bare traceback."""
    formatter = JsonFormatter(service)
    crash_log = logging.getLogger("agentry.crash")

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        record = crash_log.makeRecord(crash_log.name, logging.CRITICAL, "", 0, "crashed", (), (kind, exc, tb))
        record.error = f"{kind.__name__}: {exc}"
        sys.stderr.write(formatter.format(record) + "\n")
        sys.stderr.flush()

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
