"""`Turn`: the frames of one turn, from `message.accepted` to its terminal frame.

    turn = await client.send("count to 5")
    async for frame in turn:           # typed frames of this turn only, once each, in order
        ...
    turn.text                          # the answer so far (deltas after the last reset)
    await turn.answer()                # the final text, or raises TurnFailed / ServerError
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentry_shared.contracts.frames import (
    ConversationList,
    ErrorFrame,
    MessageAccepted,
    MessageDelta,
    MessageReset,
    TurnCompleted,
)
from agentry_shared.contracts.frames import (
    TurnFailed as TurnFailedFrame,
)

from agentry_client.errors import ConnectionLost, ServerError, TurnFailed
from agentry_client.frames import Frame, TurnFrame
from agentry_client.listener import Dropped, Ended, Listener

if TYPE_CHECKING:
    from agentry_client.client import AgentryClient


class Turn:
    """Iterates the frames of the turn a `message` started; stops after its terminal frame.

    Frames are matched by the message's `id` (echoed by `message.accepted` and by `error`),
    then by `turn_id`. An `error` answering the message raises `ServerError`.
    """

    def __init__(self, client: AgentryClient, listener: Listener, message_id: str, conversation_id: str | None) -> None:
        self.client = client
        self.id = message_id
        self.conversation_id = conversation_id
        self.turn_id: str | None = None
        self.frames: list[TurnFrame] = []
        self.end: TurnCompleted | TurnFailedFrame | None = None
        self._deltas: list[str] = []
        self._listener = listener
        self._cancel_requested = False
        self._pending: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self.end is not None

    @property
    def text(self) -> str:
        """The answer: `turn.completed.text` once there, else the deltas since the last reset."""
        if isinstance(self.end, TurnCompleted):
            return self.end.text
        return "".join(self._deltas)

    def __aiter__(self) -> Turn:
        return self

    async def __anext__(self) -> TurnFrame:
        while self.end is None:
            item = await self._listener.get()
            frame = self._take(item)
            if frame is not None:
                return frame
        self.close()
        raise StopAsyncIteration

    def _take(self, item: Frame | Dropped | Ended) -> TurnFrame | None:
        """The item if it is a frame of this turn (updating the turn's state), else None."""
        if isinstance(item, Ended):
            self.close()
            raise item.error or ConnectionLost("the client was closed before the turn ended")
        if isinstance(item, Dropped):
            if self.turn_id is None:
                self.close()
                raise ConnectionLost("the connection dropped before the message was accepted: it may not have been")
            return None
        if isinstance(item, ErrorFrame):
            if item.id == self.id:
                self.close()
                raise ServerError(item)
            return None
        if isinstance(item, ConversationList):
            return None
        if isinstance(item, MessageAccepted) and item.id == self.id and self.turn_id is None:
            self._on_accepted(item)
        elif self.turn_id is None or item.turn_id != self.turn_id:
            return None
        self._record(item)
        return item

    def _record(self, frame: TurnFrame) -> None:
        self.frames.append(frame)
        if isinstance(frame, MessageDelta):
            self._deltas.append(frame.text)
        elif isinstance(frame, MessageReset):
            self._deltas.clear()
        elif isinstance(frame, TurnCompleted | TurnFailedFrame):
            self.end = frame

    async def wait(self) -> Turn:
        """Read the turn to its end."""
        async for _ in self:
            pass
        return self

    async def answer(self) -> str:
        """The final answer; raises `TurnFailed` when the turn failed."""
        await self.wait()
        if isinstance(self.end, TurnFailedFrame):
            raise TurnFailed(self.end)
        return self.text

    async def cancel(self) -> None:
        """Stop the turn (it then ends with `turn.failed`, code `cancelled`). Before the turn
        is accepted there is no `turn_id` yet: the cancel goes out when `message.accepted` comes."""
        if self.end is not None or self._cancel_requested:
            return
        self._cancel_requested = True
        if self.turn_id is not None:
            await self.client.cancel(self.turn_id)

    def _on_accepted(self, frame: MessageAccepted) -> None:
        self.turn_id, self.conversation_id = frame.turn_id, frame.conversation_id
        if self._cancel_requested and frame.turn_id is not None:
            self._pending = asyncio.get_running_loop().create_task(self.client.cancel(frame.turn_id))

    def close(self) -> None:
        """Stop receiving frames for this turn (done by itself at the end)."""
        self._listener.close()
