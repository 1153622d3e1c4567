"""A turn's frames as OpenAI chat-completion chunks (docs/openai.md, "Streaming").

Pure. The answer (`message.delta`) becomes `content`; the agent's progress (thinking,
tools, approvals) becomes short `reasoning_content` lines such as "Using calculator…",
never the model's reasoning text (frames do not carry it).

`message.reset` says the text streamed so far for the turn is void, but text sent to an
SSE client cannot be taken back. `Answer` therefore holds the new attempt's text back
while it only repeats what was shown (a takeover or retry usually streams the same words
again) and shows only what extends it; once the new text departs from what was shown, it
is shown after a blank line, and from then on streamed live. The content a client
concatenates always ends with the final answer; a non-streamed response is the final
answer alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SEPARATOR = "\n\n"


@dataclass
class Answer:
    shown: str = ""  # content sent to the client so far
    anchor: int = 0  # where, in `shown`, the current attempt's text starts
    pending: str | None = None  # after a reset: the new attempt's text not yet shown

    def delta(self, text: str) -> str:
        """Content to send for one `message.delta` ("" for none)."""
        if self.pending is None:
            self.shown += text
            return text
        self.pending += text
        return self._settle(final=False)

    def reset(self) -> None:
        if self.pending is None:
            self.pending = ""

    def completed(self, text: str) -> str:
        """Content still to send once the turn's final text is known."""
        self.pending = text
        return self._settle(final=True)

    def _settle(self, *, final: bool) -> str:
        assert self.pending is not None
        old, new = self.shown[self.anchor :], self.pending
        if new == old or (not final and old.startswith(new)):
            if final:
                self.pending = None
            return ""  # repeating what is shown: nothing new yet
        if new.startswith(old):
            out = new[len(old) :]
        else:  # departs from what was shown: show it whole, after a blank line
            sep = SEPARATOR if self.shown else ""
            self.anchor = len(self.shown) + len(sep)
            out = sep + new
        self.shown += out
        self.pending = None
        return out


def progress(frame: dict[str, Any]) -> str | None:
    """A line of `reasoning_content` for a progress frame, or None."""
    kind = frame.get("type")
    tool = frame.get("tool", "a tool")
    if kind == "thinking.started":
        return "Thinking…\n"
    if kind == "tool.started":
        return f"Using {tool}…\n"
    if kind == "tool.finished":
        return f"{tool} done.\n" if frame.get("ok") else f"{tool} failed{_why(frame)}.\n"
    if kind == "message.reset" and frame.get("reason") == "resumed":
        return "Resuming after a restart…\n"
    return None


def _why(frame: dict[str, Any]) -> str:
    """What a failed `tool.finished` adds to "<tool> failed": its code, and, when waiting
    helps (`retry_after_ms`), the wait in whole seconds, rounded up: " (rate_limited; retry
    in 12 s)". Nothing for a frame without a code (stored before codes were sent), nor for
    `failed`, which would only repeat the word."""
    code, wait_ms = frame.get("error"), frame.get("retry_after_ms")
    if not isinstance(code, str) or code in ("", "failed"):
        return ""
    if isinstance(wait_ms, int) and not isinstance(wait_ms, bool) and wait_ms > 0:
        return f" ({code}; retry in {math.ceil(wait_ms / 1000)} s)"
    return f" ({code})"


def approval_line(tool: str, waiting: bool) -> str:
    if waiting:
        return f"{tool} needs approval: waiting for it on the WebSocket (approve or deny there)…\n"
    return f"{tool} needs approval: denied (this request does not wait for approvals)\n"


def estimate_tokens(text: str) -> int:
    """About four characters a token (no tokenizer here): an estimate, documented as one."""
    return math.ceil(len(text) / 4) if text else 0


@dataclass
class Chunks:
    """Builds the `chat.completion.chunk` objects of one response."""

    completion_id: str
    created: int
    model: str
    usage: dict[str, int] | None = field(default=None)

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }


def usage(prompt: str, completion: str) -> dict[str, int]:
    p, c = estimate_tokens(prompt), estimate_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(completion_id: str, created: int, model: str, text: str, prompt: str) -> dict[str, Any]:
    """The non-streamed answer: one `chat.completion`."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": usage(prompt, text),
    }


@dataclass
class Translator:
    """One streamed response: each frame of the turn in, the events to send out."""

    chunks: Chunks
    prompt: str
    include_usage: bool
    waits_for_approvals: bool
    answer: Answer = field(default_factory=Answer)

    def start(self) -> list[dict[str, Any]]:
        return [self.chunks.chunk({"role": "assistant", "content": ""})]

    def on(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        kind = frame.get("type")
        if kind == "message.delta":
            return self._content(self.answer.delta(str(frame.get("text", ""))))
        if kind == "message.reset":
            self.answer.reset()
        if kind == "tool.approval_required":
            return self._reasoning(approval_line(str(frame.get("tool", "a tool")), self.waits_for_approvals))
        if kind == "turn.completed":
            return self._completed(str(frame.get("text", "")))
        line = progress(frame)
        return self._reasoning(line) if line else []

    def _content(self, text: str) -> list[dict[str, Any]]:
        return [self.chunks.chunk({"content": text})] if text else []

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        return [self.chunks.chunk({"reasoning_content": text})]

    def _completed(self, text: str) -> list[dict[str, Any]]:
        events = self._content(self.answer.completed(text))
        events.append(self.chunks.chunk({}, finish_reason="stop"))
        if self.include_usage:
            events.append(self.chunks.usage_chunk(usage(self.prompt, text)))
        return events
