"""A user's conversations (`ListConversations`) and one conversation's frame log as JSON
(`GetFrames`, page by page), read over memory's RPC like every other service does."""

from __future__ import annotations

from typing import Any

from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import MEMORY_REPLY, Conversations, Frames, GetFrames, ListConversations
from agentry_shared.contracts.scope import Scope

PAGE = 1000


class ExportFailed(Exception):
    """Memory answered something other than frames (its failure's message says what)."""


async def export(bus: Bus, scope: Scope, *, timeout: float = 10.0) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    after = 0
    while True:
        request = GetFrames(scope=scope, after_seq=after, limit=PAGE)
        reply = MEMORY_REPLY.validate_json(await bus.request(bus.topology.memory_rpc, encode(request), timeout=timeout))
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


async def listing(bus: Bus, tenant_id: str, user_id: str, limit: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The user's conversations, the most recently active first (at most `limit`)."""
    request = ListConversations(tenant_id=tenant_id, user_id=user_id, limit=limit)
    body = await bus.request(bus.topology.memory_rpc, encode(request), timeout=timeout)
    reply = MEMORY_REPLY.validate_json(body)
    if not isinstance(reply, Conversations):
        raise ExportFailed(reply.model_dump_json())
    return [c.model_dump(mode="json") for c in reply.conversations]
