"""A test double of the model, shipped beside the real one (`model.OpenAIModel`).

`ScriptedModel` implements the reasoner's `Model` protocol and streams the reasoner's own
items (`TextDelta`, `ToolCallsRequested`, ...): it belongs to this package, not to
agentry_shared, which knows nothing of the agent loop. Imported by tests only, never by
the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agentry_reasoner.model import StreamItem

if TYPE_CHECKING:
    from agentry_reasoner.model import Model


class ScriptedModel:
    """Plays one script per model call and keeps the messages it was sent.

    Each step is the items one call streams, or an exception it raises (e.g.
    `ModelUnavailable`). Steps are used in order; the last one is repeated for every
    call after it.
    """

    def __init__(self, *steps: list[StreamItem] | Exception) -> None:
        self.steps = list(steps)
        self.seen: list[list[dict[str, Any]]] = []

    async def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AsyncIterator[StreamItem]:
        self.seen.append(messages)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        for item in step:
            await asyncio.sleep(0)
            yield item


if TYPE_CHECKING:
    _IMPLEMENTS: Model = ScriptedModel()  # mypy: a ScriptedModel is a Model
