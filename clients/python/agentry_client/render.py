"""How frames look in a terminal: the answer as it streams, a spinner while the model
thinks, one line per tool call. Reasoning text never reaches a client, so none is shown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from typing import TextIO

from agentry_shared.contracts.frames import (
    MessageDelta,
    MessageReset,
    ThinkingFinished,
    ThinkingStarted,
    ToolApprovalRequired,
    ToolFinished,
    ToolStarted,
    TurnCompleted,
    TurnFailed,
)

from agentry_client.frames import Frame, frame_dict

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
CLEAR_LINE = "\r\x1b[K"


def tool_outcome(frame: ToolFinished) -> str:
    """How a tool call ended, in words: `done`, or `failed` with why and, when waiting
    helps, when to retry, as in "failed: rate limited, retry in 12 s" (the wait rounded up
    to whole seconds)."""
    if frame.ok:
        return "done"
    outcome = "failed"
    # No code on frames stored before codes were sent; the code `failed` would repeat the word.
    if frame.error and frame.error != "failed":
        outcome += f": {frame.error.replace('_', ' ')}"
    if frame.retry_after_ms:
        outcome += f", retry in {math.ceil(frame.retry_after_ms / 1000)} s"
    return outcome


class JsonRenderer:
    """One raw frame per line, for scripts."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def frame(self, frame: Frame) -> None:
        self.out.write(json.dumps(frame_dict(frame), ensure_ascii=False) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        sys.stderr.write(text + "\n")

    def stop(self) -> None:
        pass


class TerminalRenderer:
    """Streams a turn for a person. `animate` turns the spinner on (a terminal)."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, animate: bool = True) -> None:
        self.out, self.err, self.animate = out, err, animate
        self._spinner: asyncio.Task[None] | None = None
        self._printed = ""  # the answer text shown for the current turn
        self._mid_line = False

    def frame(self, frame: Frame) -> None:
        if isinstance(frame, ThinkingStarted):
            self._start_spinner()
        elif isinstance(frame, ThinkingFinished):
            self._stop_spinner()
        elif isinstance(frame, ToolStarted | ToolFinished | ToolApprovalRequired):
            self._tool(frame)
        elif isinstance(frame, MessageDelta | MessageReset):
            self._answer(frame)
        elif isinstance(frame, TurnCompleted | TurnFailed):
            self._end(frame)

    def note(self, text: str) -> None:
        """A line of the client's own (dim), on a line of its own."""
        self._stop_spinner()
        self._newline()
        self._write(f"\x1b[2m{text}\x1b[0m\n" if self.animate else f"{text}\n")

    def stop(self) -> None:
        self._stop_spinner()

    # ---- pieces -------------------------------------------------------------------------

    def _tool(self, frame: ToolStarted | ToolFinished | ToolApprovalRequired) -> None:
        self._stop_spinner()
        self._newline()
        if isinstance(frame, ToolStarted):
            self._write(f"⚙ {frame.tool}…\n")
        elif isinstance(frame, ToolFinished):
            self._write(f"⚙ {frame.tool}… {tool_outcome(frame)} ({frame.elapsed_ms} ms)\n")
        else:
            arguments = json.dumps(frame.arguments, ensure_ascii=False)
            self._write(f"⚠ {frame.tool} {arguments} needs your approval. Approve? [y/N] ")

    def _answer(self, frame: MessageDelta | MessageReset) -> None:
        self._stop_spinner()
        if isinstance(frame, MessageReset):
            self._newline()
            self._write("↺ (the answer restarts)\n")
            self._printed = ""
            return
        self._write(frame.text)
        self._printed += frame.text
        self._mid_line = not frame.text.endswith("\n")

    def _end(self, frame: TurnCompleted | TurnFailed) -> None:
        self._stop_spinner()
        if isinstance(frame, TurnCompleted) and frame.text != self._printed:
            # Deltas missing (joined late) or different: show the whole answer.
            self._newline()
            self._write(frame.text)
            self._mid_line = True
        self._newline()
        if isinstance(frame, TurnFailed):
            self.err.write(f"✗ turn failed: {frame.error.code}: {frame.error.message}\n")
            self.err.flush()
        self._printed = ""

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _newline(self) -> None:
        if self._mid_line:
            self._write("\n")
            self._mid_line = False

    def _start_spinner(self) -> None:
        if self.animate and self._spinner is None:
            self._newline()
            self._spinner = asyncio.get_running_loop().create_task(self._spin())

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.cancel()
            self._spinner = None
            self._write(CLEAR_LINE)

    async def _spin(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            for i in range(10**9):
                self._write(f"{CLEAR_LINE}{SPINNER[i % len(SPINNER)]} thinking…")
                await asyncio.sleep(0.1)
