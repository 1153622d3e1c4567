"""Times every operation of a store (`agentry_memory_store_operation_duration_seconds`),
whichever backend: each public coroutine of the `Store` protocol is wrapped on the
instance, so the backends stay free of metrics code.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentry_memory.metrics import STORE_OPERATION_DURATION
from agentry_memory.store import Store

S = TypeVar("S")
_NOT_TIMED = frozenset({"open", "close"})


def store_operations() -> list[str]:
    """The names of the `Store` protocol's operations (its public coroutines)."""
    return sorted(
        name
        for name, member in inspect.getmembers(Store, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in _NOT_TIMED
    )


def _timed(operation: Callable[..., Awaitable[Any]], name: str, backend: str) -> Callable[..., Awaitable[Any]]:
    histogram = STORE_OPERATION_DURATION.labels(backend=backend, operation=name)

    @functools.wraps(operation)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await operation(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed


def time_operations(store: S, backend: str) -> S:
    """`store`, its operations timed under the label backend=`backend`."""
    for name in store_operations():
        operation = getattr(store, name, None)
        if operation is not None:
            setattr(store, name, _timed(operation, name, backend))
    return store
