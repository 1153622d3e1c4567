"""One conversation's frame log as JSON, read over memory's RPC (`GetFrames`, page by page).

Listing a user's conversations needs memory's `ListConversations` request, which is not
on this branch yet: `conversations list` says so rather than guess.
"""

from __future__ import annotations

from typing import Any

from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import MEMORY_REPLY, Frames, GetFrames
from agentry_shared.contracts.scope import Scope

PAGE = 1000


class ExportFailed(Exception):
    """Memory answered something other than frames (its failure's message says what)."""


async def export(bus: Bus, scope: Scope, *, timeout: float = 10.0) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    after = 0
    while True:
        request = GetFrames(scope=scope, after_seq=after, limit=PAGE)
        reply = MEMORY_REPLY.validate_json(
            await bus.request(bus.topology.memory_rpc_queue, encode(request), timeout=timeout)
        )
        if not isinstance(reply, Frames):
            raise ExportFailed(reply.model_dump_json())
        frames += reply.frames
        if len(reply.frames) < PAGE:
            break
        after = max(int(f.get("seq", after)) for f in reply.frames)
    return {
        "tenant_id": scope.tenant_id,
        "user_id": scope.user_id,
        "conversation_id": scope.conversation_id,
        "frames": frames,
    }
