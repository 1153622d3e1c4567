"""Settings of the hybrid memory that `agentry_shared.settings.MemorySettings` does not carry
yet: read here, from the same environment, until they move there (same names)."""

from __future__ import annotations

from agentry_shared.settings import MemorySettings
from pydantic import Field, SecretStr


class MemoryServiceSettings(MemorySettings):
    # The token budget below bounds the window now; the message count is only a safety cap
    # (the shared default of 40 would bound it before the budget ever did).
    memory_window_messages: int = Field(default=500, ge=1)
    # Tokens (tokens.py's estimate) of everything a context carries: summary, recalled
    # facts and the window. 8,000 leaves room for the system prompt, tools and the answer
    # in today's 16k-128k models, and keeps each turn's cost bounded.
    memory_window_tokens: int = Field(default=8000, ge=256)
    # Unsummarised tokens left out of the window before the summary is refreshed: one
    # model call per ~this much conversation, not one per turn.
    memory_summary_trigger_tokens: int = Field(default=1000, ge=1)
    # Facts put into each context (the most relevant to the new message) and tasks shown.
    memory_recall_facts: int = Field(default=8, ge=0, le=20)
    memory_recall_tasks: int = Field(default=5, ge=0, le=20)
    # Reasoning traces are kept this long for audit, then swept (TTL index on MongoDB).
    memory_reasoning_retention_days: float = Field(default=30.0, gt=0)
    # The model that writes the rolling summaries (the reasoner's variables and defaults).
    openai_base_url: str = "http://127.0.0.1:8090/v1"
    openai_api_key: SecretStr = SecretStr("offline")
    llm_model: str = "agentry-offline"
    memory_summary_timeout_seconds: float = Field(default=60.0, gt=0)


def service_settings(settings: MemorySettings | None = None) -> MemoryServiceSettings:
    """The shared settings given (tests pass their own) plus what this module adds, read
    from the environment. Only the values that were set (by the environment or the
    caller) are carried over, so this module's defaults apply to the rest."""
    if settings is None or isinstance(settings, MemoryServiceSettings):
        return settings or MemoryServiceSettings()
    return MemoryServiceSettings(**{name: getattr(settings, name) for name in settings.model_fields_set})
