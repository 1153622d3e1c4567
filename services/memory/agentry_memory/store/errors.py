"""Store errors that are answers, not failures: retrying them cannot succeed."""

from __future__ import annotations


class StoreRefusal(Exception):
    """The request is wrong for the stored state; the same request will always fail."""


class Forbidden(StoreRefusal):
    """The conversation (or turn) exists but belongs to another tenant or user."""


class NotFound(StoreRefusal):
    """No such conversation or turn in this scope."""


class LimitReached(StoreRefusal):
    """Creating it would take the user past a limit (MEMORY_MAX_CONVERSATIONS_PER_USER)."""


class Invalid(StoreRefusal):
    """The request cannot be stored as it is (e.g. a fact with no words)."""


class Erased(StoreRefusal):
    """The user was erased after this was accepted: storing it would bring them back."""
