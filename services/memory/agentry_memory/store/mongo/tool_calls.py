"""Tool-call claims on MongoDB: a call runs once, and its result is kept by call_id."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from agentry_shared.contracts.scope import Scope
from pymongo.errors import DuplicateKeyError

from agentry_memory.store.mongo.base import MongoBase, user_filter
from agentry_memory.store.records import ToolCall


class MongoToolCalls(MongoBase):
    async def claim_tool_call(self, scope: Scope, turn_id: str, call_id: str, tool: str) -> ToolCall:
        await self._turn(scope, turn_id)
        calls = self._c("tool_calls")
        key = {**user_filter(scope), "turn_id": turn_id, "call_id": call_id}
        now = time.time()
        try:
            await calls.insert_one(
                {**key, "conversation_id": scope.conversation_id, "tool": tool, "claimed_at": now, "result": None}
            )
            return ToolCall("new")
        except DuplicateKeyError:
            pass
        call = await calls.find_one(key)
        assert call is not None
        if call["result"] is not None:
            return ToolCall("done", result=json.loads(call["result"]))
        return ToolCall("running", claimed_seconds_ago=max(0.0, now - float(call["claimed_at"])))

    async def complete_tool_call(self, scope: Scope, turn_id: str, call_id: str, result: dict[str, Any]) -> None:
        await self._turn(scope, turn_id)
        now = time.time()
        # Matches only a call without a result; an unclaimed call is inserted, and a
        # completed one makes the upsert hit the unique index: the first result stays.
        with contextlib.suppress(DuplicateKeyError):
            await self._c("tool_calls").update_one(
                {**user_filter(scope), "turn_id": turn_id, "call_id": call_id, "result": None},
                {
                    "$set": {"result": json.dumps(result, ensure_ascii=False), "completed_at": now},
                    "$setOnInsert": {
                        "conversation_id": scope.conversation_id,
                        "tool": str(result.get("tool", "")),
                        "claimed_at": now,
                    },
                },
                upsert=True,
            )
