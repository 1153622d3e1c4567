"""Holds a step's first text back while it may still be the start of a tool call.

Some models write a stray `{`, a JSON object or a `<tool_call>` tag before (or instead
of) the structured call; that text must not reach the client as the answer. Text is
held while, stripped, it is empty or could still begin a structured call; anything else
opens the gate and streams live. What is still held at the end of the step is the
answer if the step ends without tool calls, and is dropped if it ends with them (text
that already went out is taken back with `message.reset`).
"""

from __future__ import annotations

STRUCTURED_STARTS = ("{", "[", "<tool_call", "<function", "```", "<|")


def may_be_structured(text: str) -> bool:
    stripped = text.lstrip()
    return not stripped or any(stripped.startswith(s) or s.startswith(stripped) for s in STRUCTURED_STARTS)


class AnswerGate:
    def __init__(self) -> None:
        self._held: list[str] = []
        self.open = False

    def offer(self, text: str) -> str:
        """What of `text` (with what was held before it) may go to the client now."""
        if self.open:
            return text
        self._held.append(text)
        so_far = "".join(self._held)
        if may_be_structured(so_far):
            return ""
        self.open, self._held = True, []
        return so_far

    def rest(self) -> str:
        """What is still held (the end of the step)."""
        held, self._held = "".join(self._held), []
        return held

    def reset(self) -> None:
        self._held, self.open = [], False
