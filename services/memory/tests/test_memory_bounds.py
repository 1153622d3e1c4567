"""Integers from a client reach memory only within bounds; past them memory answers
`invalid` (a caller mistake), never `internal` (which callers retry)."""

from __future__ import annotations

import json

import pytest
from agentry_memory.rpc.server import MemoryRpc
from agentry_memory.store import Store
from agentry_shared.contracts.control import ControlMessage
from agentry_shared.contracts.memory import MEMORY_REPLY, ClaimConversation, MemoryFailure
from agentry_shared.contracts.scope import Scope


async def _ignore(_: ControlMessage) -> None:
    return None


@pytest.mark.parametrize("after_seq", [2**63, 2**63 - 1, 2**64, -1])
async def test_get_frames_after_seq_out_of_range_is_invalid(store: Store, scope: Scope, after_seq: int) -> None:
    rpc = MemoryRpc(store, window_messages=40, broadcast=_ignore)
    await rpc.handle(ClaimConversation(scope=scope).model_dump_json().encode())
    body = {"kind": "memory.get_frames", "scope": scope.model_dump(), "after_seq": after_seq}
    reply = MEMORY_REPLY.validate_json(await rpc.handle(json.dumps(body).encode()))
    assert isinstance(reply, MemoryFailure) and reply.code == "invalid", reply
    assert "after_seq" in reply.message
