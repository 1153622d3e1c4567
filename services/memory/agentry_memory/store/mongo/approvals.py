"""Approvals of destructive tool calls and per-user tool rate limits on MongoDB: each
decision and each count is one atomic document update."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, cast

from agentry_shared.contracts.frames import arguments_sha256
from agentry_shared.contracts.memory import ApprovalState
from agentry_shared.contracts.scope import Scope
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from agentry_memory.store.errors import NotFound
from agentry_memory.store.mongo.base import MongoBase, as_date, conversation_filter, retry_duplicate, user_filter
from agentry_memory.store.records import (
    TOKEN_WINDOW_SECONDS,
    ApprovalAnswer,
    ApprovalRecord,
    TokenTaken,
    kept_digest,
    token_window,
)


class MongoApprovals(MongoBase):
    async def request_approval(
        self, scope: Scope, turn_id: str, call_id: str, tool: str, arguments: dict[str, Any], expires_at: float
    ) -> None:
        await self._turn(scope, turn_id)
        fields = {
            "tool": tool,
            "arguments": json.dumps(arguments, ensure_ascii=False),
            "args_sha256": arguments_sha256(arguments),
            "requested_at": time.time(),
            "expires_at": expires_at,
            "state": "pending",
            "decided_at": None,
        }
        with contextlib.suppress(DuplicateKeyError):  # asked twice at once: the first request stays
            await self._c("approvals").update_one(
                {**conversation_filter(scope), "turn_id": turn_id, "call_id": call_id},
                {"$setOnInsert": fields},
                upsert=True,
            )

    async def approval(self, scope: Scope, turn_id: str, call_id: str, now: float) -> ApprovalRecord | None:
        await self._turn(scope, turn_id)
        found = await self._c("approvals").find_one(
            {**conversation_filter(scope), "turn_id": turn_id, "call_id": call_id}
        )
        if found is None:
            return None
        state = cast(ApprovalState, found["state"])
        shown: ApprovalState = "expired" if state == "pending" and now > float(found["expires_at"]) else state
        digest = kept_digest(found.get("args_sha256"), str(found["arguments"]))
        return ApprovalRecord(scope.conversation_id, turn_id, call_id, shown, args_sha256=digest)

    async def decide_approval(self, answer: ApprovalAnswer, now: float) -> ApprovalRecord:
        approvals = self._c("approvals")
        named = {"tenant_id": answer.tenant_id, "user_id": answer.user_id}
        if answer.conversation_id is not None:
            named["conversation_id"] = answer.conversation_id
        # Turn ids are unique: with the user's (and the conversation, if named) this is one document.
        found = await approvals.find_one({**named, "turn_id": answer.turn_id, "call_id": answer.call_id})
        if found is None:
            raise NotFound(f"no approval {answer.call_id} of turn {answer.turn_id} for this user")
        ids = (str(found["conversation_id"]), answer.turn_id, answer.call_id)
        digest = kept_digest(found.get("args_sha256"), str(found["arguments"]))
        if found["state"] != "pending" or digest != answer.args_sha256:
            return ApprovalRecord(*ids, cast(ApprovalState, found["state"]), args_sha256=digest)
        decided: ApprovalState = (
            "expired" if now > float(found["expires_at"]) else "approved" if answer.approved else "denied"
        )
        # Only a pending approval is decided: of two decisions at once, one wins.
        result = await approvals.update_one(
            {"_id": found["_id"], "state": "pending"}, {"$set": {"state": decided, "decided_at": now}}
        )
        if result.modified_count == 0:
            winner = await approvals.find_one({"_id": found["_id"]})
            assert winner is not None
            return ApprovalRecord(*ids, cast(ApprovalState, winner["state"]), args_sha256=digest)
        return ApprovalRecord(*ids, decided, changed=decided != "expired", args_sha256=digest)

    async def take_tool_token(self, scope: Scope, tool: str, per_minute: int, now: float) -> TokenTaken:
        """One document per (user, tool, window), counted with `$inc`; the TTL index drops
        past windows."""
        await self._owned(scope)
        if per_minute <= 0:
            return TokenTaken(True)
        window = token_window(now)

        async def count() -> Any:
            return await self._c("tool_tokens").find_one_and_update(
                {**user_filter(scope), "tool": tool, "window_start": window},
                {"$inc": {"used": 1}, "$setOnInsert": {"expires": as_date(window + 2 * TOKEN_WINDOW_SECONDS)}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )

        counted = await retry_duplicate(count)
        if int(counted["used"]) <= per_minute:
            return TokenTaken(True)
        return TokenTaken(False, retry_after_seconds=max(0.0, window + TOKEN_WINDOW_SECONDS - now))
