"""Cutting tool output to size, visibly. Standard library only: it runs in the sandbox."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # not typing's: this runs in every call's child, where start-up counts
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def clip(data: bytes, cap: int, total: int | None = None) -> str:
    """`data` as text, cut to `cap` bytes with "…[truncated N bytes]" where it was cut;
    `total` is the full size when more was seen than kept."""
    total = len(data) if total is None else total
    if total <= cap:
        return data.decode("utf-8", "replace")
    # "ignore" at the cut: half a character there is an artefact of cutting, not data.
    return data[:cap].decode("utf-8", "ignore") + f"…[truncated {total - cap} bytes]"


def fit(build: Callable[[int], dict[str, Any]], cap: int, limit: int) -> str:
    """JSON of `build(cap)`, halving `cap` until it fits in `limit` bytes: escaping can
    make text grow six-fold ("\\u0000"), and the worker refuses output over its limit."""
    while True:
        text = json.dumps(build(cap), ensure_ascii=False)
        if len(text.encode()) <= limit or cap < 64:
            return text
        cap //= 2
