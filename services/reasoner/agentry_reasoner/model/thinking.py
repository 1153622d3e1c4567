"""Splits a step's `content` into thinking and answer text, whatever markers the server
left in it: `<think>…</think>` (and the other configured tags), a reply that starts
inside the thinking (the chat template already opened the tag, so only `</think>`
appears), and gpt-oss's harmony channels (`<|channel|>analysis<|message|>…<|end|>`).

Pure and incremental: chunks are cut anywhere, a marker may be split across them, and
the split never depends on where the cuts fall. Anything inside a marker, and any
harmony channel other than `final`, is thinking: when unsure, keep it private. Inside
one kind of thinking the other kind's markers are words of the thinking (an analysis
channel that writes `</think>` has not ended).
"""

from __future__ import annotations

from typing import Literal

PieceKind = Literal["text", "reasoning", "retract"]
# "retract": the answer text of this step so far was thinking after all (a `</think>`
# with no opening tag, when the reply was not expected to start inside the thinking).
Piece = tuple[PieceKind, str]

HARMONY_HEADER = ("<|channel|>", "<|start|>")
HARMONY_BODY = "<|message|>"
HARMONY_STOP = ("<|end|>", "<|return|>", "<|call|>")
HARMONY_IGNORED = ("<|constrain|>",)
DEFAULT_TAGS = ("think", "thinking")

_State = Literal["text", "reasoning", "header"]
_Kind = Literal["tag", "harmony"]  # which markers opened the thinking, and so may end it


class ThinkingSplitter:
    """One per model call. `feed` each content chunk, then `close` at the end of the stream.

    `starts_open`: True, the reply starts inside the thinking (given out as thinking as it
    comes); None, not known: read so too, but what the implied thinking holds is given out
    only once the reply shows what it is (thinking at a `</think>`, the answer at the end),
    so that an answer is not recorded as thinking."""

    def __init__(self, tags: tuple[str, ...] = DEFAULT_TAGS, *, starts_open: bool | None = False) -> None:
        self._opening = tuple(f"<{t}>" for t in tags)
        self._closing = tuple(f"</{t}>" for t in tags)
        markers = (*self._opening, *self._closing, *HARMONY_HEADER, HARMONY_BODY, *HARMONY_STOP, *HARMONY_IGNORED)
        self._markers = tuple(sorted(set(markers), key=len, reverse=True))
        self._longest = max(len(m) for m in self._markers)
        self._buffer = ""
        implied = starts_open is not False
        self._state: _State = "reasoning" if implied else "text"
        self._kind: _Kind | None = "tag" if implied else None
        self._header = ""
        self._implied = implied  # inside a thinking no tag opened
        self._holding = starts_open is None  # what the implied thinking holds is not given out yet
        self._implied_text: list[str] = []
        self._said: list[str] = []  # answer text given out so far (a stray `</think>` retracts it)
        self._strip = True  # drop whitespace before the answer starts (after `</think>`, at the start)
        self._verdict: bool | None = None

    @property
    def verdict(self) -> bool | None:
        """Whether this reply showed that the model's template opens the thinking: True
        when a closing tag ended a thinking no tag opened, False when the reply marked its
        own thinking (an opening tag, a harmony channel, reasoning in its own field) or
        answered with no marker while read as starting inside the thinking, None when it
        showed nothing (no text, or cut)."""
        return self._verdict

    def separate_reasoning_seen(self) -> None:
        """The server sends reasoning in its own field: content is the answer, not thinking."""
        if self._implied and not self._implied_text:
            self._implied, self._state = False, "text"
            self._settle(False)

    def feed(self, chunk: str) -> list[Piece]:
        self._buffer += chunk
        out: list[Piece] = []
        while True:
            at, marker = self._next_marker()
            if marker is None:
                keep = self._partial_marker_length()
                self._emit(self._buffer[: len(self._buffer) - keep], out)
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return _merged(out)
            self._emit(self._buffer[:at], out)
            self._buffer = self._buffer[at + len(marker) :]
            self._on_marker(marker, out)

    def close(self, *, cut: bool = False) -> list[Piece]:
        """The stream ended: what is left, and an implied thinking that never closed is
        the answer after all (the model did not think; it is also kept as reasoning).
        Not when the reply was `cut` (the output cap): that is thinking that never got to
        its answer, so it stays thinking."""
        out: list[Piece] = []
        self._emit(self._buffer, out)
        self._buffer = ""
        if self._implied and self._implied_text and not cut:
            out.append(("text", "".join(self._implied_text).strip()))
            self._implied_text.clear()
            self._settle(False)
        elif self._implied:
            self._release(out)
        return _merged(out)

    def _release(self, out: list[Piece]) -> None:
        """The implied thinking ends as thinking: what was held is given out as such."""
        if self._holding and self._implied_text:
            out.append(("reasoning", "".join(self._implied_text)))

    def _held(self) -> bool:
        """Whether an implied thinking holds any words: a marker after them is a marker
        inside the thinking, which says nothing of how the reply began."""
        return any(text.strip() for text in self._implied_text)

    def _settle(self, starts_open: bool) -> None:
        if self._verdict is None:  # the first sign counts: later markers may be words
            self._verdict = starts_open

    def _next_marker(self) -> tuple[int, str | None]:
        best, found = len(self._buffer), None
        for marker in self._markers:
            at = self._buffer.find(marker)
            if at != -1 and (at < best or (at == best and found is not None and len(marker) > len(found))):
                best, found = at, marker
        return best, found

    def _partial_marker_length(self) -> int:
        """How many trailing characters could be the start of a marker cut by the chunking."""
        start = max(0, len(self._buffer) - self._longest + 1)
        for at in range(start, len(self._buffer)):
            tail = self._buffer[at:]
            if tail[0] == "<" and any(m.startswith(tail) for m in self._markers):
                return len(tail)
        return 0

    def _emit(self, text: str, out: list[Piece]) -> None:
        if not text:
            return
        if self._state == "header":
            self._header += text
        elif self._state == "reasoning":
            if not (self._implied and self._holding):
                out.append(("reasoning", text))
            if self._implied:
                self._implied_text.append(text)
        else:
            if self._strip:
                text = text.lstrip()
                if not text:
                    return
                self._strip = False
            self._said.append(text)
            out.append(("text", text))

    def _on_marker(self, marker: str, out: list[Piece]) -> None:
        other_kind = self._state != "text" and self._kind != _kind_of(marker, self._opening + self._closing)
        # A thinking only implied (no marker of the reply opened it) is of no kind yet:
        # a harmony channel there is the reply's own structure, not words of a thinking.
        if other_kind and not (self._implied and marker in HARMONY_HEADER):
            self._emit(marker, out)  # the other kind's marker: words of the thinking
            return
        if marker in self._opening:
            self._open_tag(out)
        elif marker in self._closing:
            self._close_tag(out)
        elif marker in HARMONY_HEADER:
            if not self._held():
                self._settle(False)  # the reply's own channels
            if self._implied:
                self._release(out)
            self._state, self._kind, self._header, self._implied = "header", "harmony", "", False
            self._implied_text.clear()
        elif marker == HARMONY_BODY and self._state == "header":
            words = self._header.split()
            final = bool(words) and words[0] == "final"
            self._state, self._strip = ("text", True) if final else ("reasoning", self._strip)
            self._kind = None if final else "harmony"
        elif marker in HARMONY_STOP:
            self._state, self._kind = "reasoning", "harmony"  # between harmony messages: nothing to show

    def _open_tag(self, out: list[Piece]) -> None:
        if self._implied and not self._held():
            self._settle(False)  # the reply opens its own thinking
        if self._implied:  # what it held before the tag stays thinking: unsure, private
            self._release(out)
        self._state, self._kind, self._implied = "reasoning", "tag", False
        self._implied_text.clear()

    def _close_tag(self, out: list[Piece]) -> None:
        if self._state == "text" and self._said:
            out.append(("retract", ""))
            out.append(("reasoning", "".join(self._said)))
            self._said.clear()
        if self._state == "text" or self._implied:
            self._settle(True)  # a closing tag no tag opened: the template opened it
        if self._implied:
            self._release(out)
        self._state, self._kind, self._strip, self._implied = "text", None, True, False
        self._implied_text.clear()


def _kind_of(marker: str, tags: tuple[str, ...]) -> _Kind:
    """The kind of thinking `marker` (one of `tags`, or a harmony marker) belongs to."""
    return "tag" if marker in tags else "harmony"


def _merged(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for kind, text in pieces:
        if out and out[-1][0] == kind and kind != "retract":
            out[-1] = (kind, out[-1][1] + text)
        elif text or kind == "retract":
            out.append((kind, text))
    return out
