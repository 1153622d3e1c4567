"""The memory service's settings: all of them live in `agentry_shared.settings`."""

from __future__ import annotations

from agentry_shared.settings import MemorySettings


def service_settings(settings: MemorySettings | None = None) -> MemorySettings:
    """The settings given (tests pass their own), else read from the environment."""
    return settings or MemorySettings()
