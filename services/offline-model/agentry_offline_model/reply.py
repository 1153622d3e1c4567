"""What the rules decide, independent of how the server delivers it (streamed or whole)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Starts the first reasoning chunk, so tests can prove reasoning never reaches end users.
REASONING_SENTINEL = "[reasoning]"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Reply:
    """Reasoning chunks, then either `tool_calls` or `text`; plus failure-injection knobs."""

    reasoning: list[str]
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Stream the text one word per chunk (long answers that fault tests interrupt mid-stream).
    word_chunks: bool = False
    # Test hooks: the server answers with this HTTP status, waits before the first chunk,
    # or stops after the reasoning chunks until the client goes away.
    fail_status: int | None = None
    delay_s: float = 0.0
    hang: bool = False
