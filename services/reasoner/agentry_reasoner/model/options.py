"""How to talk to one model: which thinking markers count, and the request's knobs.

`auto` values are decided from the model's name, for the families whose needs are
known; every one of them can be set explicitly (see docs/models.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agentry_shared.settings import ReasonerSettings

from agentry_reasoner.model.thinking import DEFAULT_TAGS

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]

# Chat templates that open `<think>` in the prompt, so the reply starts inside the thinking.
STARTS_OPEN_MODELS = re.compile(r"deepseek-r1|r1-distill|qwq|thinking", re.IGNORECASE)
# OpenAI's reasoning models refuse `max_tokens` and want `max_completion_tokens`.
COMPLETION_TOKENS_MODELS = re.compile(r"(^|/)(o\d|gpt-5)", re.IGNORECASE)


@dataclass(frozen=True)
class ModelOptions:
    think_tags: tuple[str, ...] = DEFAULT_TAGS
    # None: not known yet. A reply is then read as starting inside the thinking (nothing
    # of it shown) until it shows otherwise, so no model's first reply can leak thinking.
    starts_open: bool | None = False
    # `auto`: what a reply shows (a `</think>` no tag opened, or its own markers, or an
    # answer with none) decides `starts_open` for every later call of the process.
    learns_starts_open: bool = False
    max_output_tokens: int | None = None
    max_tokens_field: MaxTokensField = "max_tokens"
    reasoning_effort: str | None = None
    stream_usage: bool = True  # ask for `usage` at the end of the stream (hidden reasoning's count)

    @classmethod
    def for_model(cls, settings: ReasonerSettings, model: str) -> ModelOptions:
        tags = tuple(t.strip() for t in settings.llm_think_tags.split(",") if t.strip())
        starts_open = settings.llm_think_starts_open
        field = settings.llm_max_tokens_field
        return cls(
            think_tags=tags,
            starts_open=(True if STARTS_OPEN_MODELS.search(model) else None)
            if starts_open == "auto"
            else starts_open == "true",
            learns_starts_open=starts_open == "auto",
            max_output_tokens=settings.llm_max_output_tokens,
            max_tokens_field=(
                ("max_completion_tokens" if COMPLETION_TOKENS_MODELS.search(model) else "max_tokens")
                if field == "auto"
                else field
            ),
            reasoning_effort=settings.llm_reasoning_effort,
            stream_usage=settings.llm_stream_usage,
        )
