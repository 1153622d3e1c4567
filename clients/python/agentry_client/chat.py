"""`agentry chat`: a conversation in the terminal.

Type a message and the answer streams. While a turn runs, `/cancel` (or Ctrl-C) stops it
and an approval question is answered with `y` (anything else denies). `/new` starts a new
conversation, `/quit` (or end of input, or Ctrl-C at the prompt) leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

from agentry_shared.contracts.frames import ToolApprovalRequired

from agentry_client.client import AgentryClient
from agentry_client.console import Lines, decodable
from agentry_client.errors import ServerError
from agentry_client.frames import Frame
from agentry_client.turn import Turn

HELP = "/new starts a new conversation, /cancel (or Ctrl-C) stops the running turn, /quit leaves"
PROMPT = "you> "


class Renderer(Protocol):
    def frame(self, frame: Frame) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class Chat:
    def __init__(
        self,
        client: AgentryClient,
        lines: Lines,
        renderer: Renderer,
        conversation_id: str | None,
        on_conversation: Callable[[str], None],
        *,
        prompt: Callable[[str], None],
    ) -> None:
        self.client, self.lines, self.renderer = client, lines, renderer
        self.conversation_id = conversation_id
        self.on_conversation = on_conversation
        self.prompt = prompt
        self.approvals: list[ToolApprovalRequired] = []
        self.eof = False
        self._tasks: set[asyncio.Future[Any]] = set()

    async def run(self) -> int:
        while not self.eof:
            self.prompt(PROMPT)
            line = await self.lines.get()
            if line is None or line.strip() in ("/quit", "/exit"):
                break
            await self.command(line.strip())
        return 0

    async def command(self, text: str) -> None:
        if not text:
            return
        if not decodable(text):
            encoding = getattr(self.lines.source, "encoding", None) or "its"
            self.renderer.note(f"(not sent: the line is not valid {encoding} text; type it again)")
            return
        if text == "/new":
            self.conversation_id = None
            self.renderer.note("(a new conversation starts with your next message)")
        elif text == "/cancel":
            self.renderer.note("(no turn is running)")
        elif text in ("/help", "/?"):
            self.renderer.note(HELP)
        else:
            await self.converse(text)

    async def converse(self, text: str) -> None:
        try:
            turn = await self.client.send(text, self.conversation_id)
            await self.stream(turn)
        except ServerError as error:
            if error.code == "not_found" and self.conversation_id is not None:
                self.renderer.note("(that conversation is gone: starting a new one)")
                self.conversation_id = None
                await self.converse(text)
                return
            self.renderer.note(f"✗ refused: {error}")
        if self.conversation_id is not None:
            self.on_conversation(self.conversation_id)

    async def stream(self, turn: Turn) -> None:
        """Show the turn's frames while answering what the user types meanwhile; Ctrl-C
        cancels the turn (a second one leaves)."""
        with _interrupts(lambda: self.interrupt(turn)):
            await self._stream(turn)

    def interrupt(self, turn: Turn) -> None:
        """Ctrl-C while a turn runs: cancel it, as `/cancel` does."""
        self.renderer.note("(cancelling… Ctrl-C again leaves)")
        task = asyncio.ensure_future(turn.cancel())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stream(self, turn: Turn) -> None:
        frames = aiter(turn)
        next_frame: asyncio.Future[Frame] = asyncio.ensure_future(anext(frames))
        next_line: asyncio.Future[str | None] | None = None
        try:
            while True:
                if next_line is None and not self.eof:
                    next_line = asyncio.ensure_future(self.lines.get())
                waiting: set[asyncio.Future[Frame] | asyncio.Future[str | None]] = {next_frame}
                if next_line is not None:
                    waiting.add(next_line)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if next_line is not None and next_line.done():
                    await self.during_turn(next_line.result(), turn)
                    next_line = None
                if next_frame.done():
                    try:
                        self.show(next_frame.result(), turn)
                    except StopAsyncIteration:
                        return
                    next_frame = asyncio.ensure_future(anext(frames))
        finally:
            self.renderer.stop()
            for task in (next_frame, next_line):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await task
            self.approvals.clear()

    def show(self, frame: Frame, turn: Turn) -> None:
        if turn.conversation_id and turn.conversation_id != self.conversation_id:
            self.conversation_id = turn.conversation_id
            self.on_conversation(turn.conversation_id)
        self.renderer.frame(frame)
        if isinstance(frame, ToolApprovalRequired):
            self.approvals.append(frame)

    async def during_turn(self, line: str | None, turn: Turn) -> None:
        if line is None:
            self.eof = True  # let the turn finish, then leave
            return
        text = line.strip()
        if self.approvals:
            request = self.approvals.pop(0)
            approved = text.lower() in ("y", "yes")
            await self.client.approve(request, approved)
            self.renderer.note(f"({'approved' if approved else 'denied'}: {request.tool})")
        elif text == "/cancel":
            await turn.cancel()
            self.renderer.note("(cancelling…)")
        elif text:
            self.renderer.note("(a turn is running: wait for it, or /cancel it)")


@contextlib.contextmanager
def _interrupts(on_interrupt: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C calls `on_interrupt` in the event loop; the next one does what Ctrl-C
    does otherwise (the program ends). Without this, Ctrl-C ended the program in the middle
    of a turn and left the turn running on the server."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    fired = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            loop.call_soon_threadsafe(on_interrupt)
        elif callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
