"""Answers the requests a reasoner resumes from and a client replays from: a turn's
context (assembled by `context.assembler`), its checkpoint, the stored frames."""

from __future__ import annotations

import asyncio
from typing import assert_never

from agentry_shared.contracts.memory import (
    AppendMessages,
    Context,
    Done,
    Frames,
    GetContext,
    GetFrames,
    MemoryReply,
)

from agentry_memory.context.assembler import ContextAssembler
from agentry_memory.store import Store

ContextRequest = GetContext | AppendMessages | GetFrames
CONTEXT_REQUESTS = (GetContext, AppendMessages, GetFrames)


async def answer_context_request(store: Store, assembler: ContextAssembler, request: ContextRequest) -> MemoryReply:
    match request:
        case GetContext(scope=scope, turn_id=turn_id):
            context = await assembler.assemble(scope, turn_id)
            return Context(messages=context.messages, produced=context.produced)
        case AppendMessages(scope=scope, turn_id=turn_id, messages=messages, reasoning=reasoning):
            # Together, so the embedded store commits them in one group (one fsync).
            await asyncio.gather(
                store.append_messages(scope, turn_id, messages),
                *(store.record_reasoning(scope, turn_id, r.step, r.text) for r in reasoning),
            )
            return Done()
        case GetFrames(scope=scope, after_seq=after_seq, limit=limit):
            return Frames(frames=await store.frames_after(scope, after_seq, limit))
    assert_never(request)
