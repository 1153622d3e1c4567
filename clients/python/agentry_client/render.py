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

# Control characters in text from the model, a tool or the gateway, as visible symbols: an
# escape sequence could otherwise move the cursor, clear the screen, retitle the window or
# hide text. C0 controls show as their control pictures (ESC as ␛), DEL as ␡, C1 controls
# (ESC's one-byte forms, CSI U+009B among them) as �; a carriage return is dropped (it would
# let later text overwrite earlier text); newline and tab are kept.
_VISIBLE = {
    **{code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\n\t\r"},
    ord("\r"): None,
    0x7F: "\u2421",
    **{code: "\ufffd" for code in range(0x80, 0xA0)},
}


def printable(text: str) -> str:
    """`text` safe to write to a terminal: no control character but newline and tab."""
    return text.translate(_VISIBLE)


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
        sys.stderr.write(printable(text) + "\n")

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
        text = printable(text)  # it may quote the gateway (a refusal's message)
        self._write(f"\x1b[2m{text}\x1b[0m\n" if self.animate else f"{text}\n")

    def stop(self) -> None:
        self._stop_spinner()

    # ---- pieces -------------------------------------------------------------------------

    def _tool(self, frame: ToolStarted | ToolFinished | ToolApprovalRequired) -> None:
        self._stop_spinner()
        self._newline()
        tool = printable(frame.tool)
        if isinstance(frame, ToolStarted):
            self._write(f"⚙ {tool}…\n")
        elif isinstance(frame, ToolFinished):
            self._write(f"⚙ {tool}… {printable(tool_outcome(frame))} ({frame.elapsed_ms} ms)\n")
        else:
            arguments = printable(json.dumps(frame.arguments, ensure_ascii=False))
            self._write(f"⚠ {tool} {arguments} needs your approval. Approve? [y/N] ")

    def _answer(self, frame: MessageDelta | MessageReset) -> None:
        self._stop_spinner()
        if isinstance(frame, MessageReset):
            self._newline()
            self._write("↺ (the answer restarts)\n")
            self._printed = ""
            return
        self._write(printable(frame.text))
        self._printed += frame.text
        self._mid_line = not frame.text.endswith("\n")

    def _end(self, frame: TurnCompleted | TurnFailed) -> None:
        self._stop_spinner()
        if isinstance(frame, TurnCompleted) and frame.text != self._printed:
            # Deltas missing (joined late) or different: show the whole answer.
            self._newline()
            self._write(printable(frame.text))
            self._mid_line = True
        self._newline()
        if isinstance(frame, TurnFailed):
            self.err.write(printable(f"✗ turn failed: {frame.error.code}: {frame.error.message}") + "\n")
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
