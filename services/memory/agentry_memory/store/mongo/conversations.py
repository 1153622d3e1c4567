"""A user's conversations on MongoDB, for the web page's list.

Without a last-activity field on the conversation document, it is computed: one indexed
read of the user's conversations (`by_user`; at most MEMORY_MAX_CONVERSATIONS_PER_USER)
and one `$group` of the user's turns, then the titles of only the `limit` listed.
"""

from __future__ import annotations

import asyncio

from agentry_shared.contracts.frames import ConversationSummary

from agentry_memory.store.mongo.base import MongoBase
from agentry_memory.store.mongo.schema import Document
from agentry_memory.store.records import conversation_title


class MongoConversations(MongoBase):
    async def list_conversations(self, tenant_id: str, user_id: str, limit: int) -> list[ConversationSummary]:
        user = {"tenant_id": tenant_id, "user_id": user_id}
        created = {
            str(doc["_id"]): float(doc["created_at"])
            async for doc in self._c("conversations").find(user, {"_id": 1, "created_at": 1})
        }
        last = dict(created)
        pipeline: list[Document] = [
            {"$match": user},
            {
                "$group": {
                    "_id": "$conversation_id",
                    "started": {"$max": "$created_at"},
                    "ended": {"$max": "$finished_at"},
                }
            },
        ]
        async for group in await self._c("turns").aggregate(pipeline):
            conversation_id = str(group["_id"])
            if conversation_id in last:
                times = (last[conversation_id], group.get("started"), group.get("ended"))
                last[conversation_id] = max(float(t) for t in times if t is not None)
        newest = sorted(last, key=lambda c: (last[c], c), reverse=True)[:limit]
        titles = await asyncio.gather(*(self._first_message(tenant_id, user_id, c) for c in newest))
        return [
            ConversationSummary(
                conversation_id=c, created_at=created[c], last_activity_at=last[c], title=conversation_title(title)
            )
            for c, title in zip(newest, titles, strict=True)
        ]

    async def _first_message(self, tenant_id: str, user_id: str, conversation_id: str) -> str | None:
        where = {"tenant_id": tenant_id, "user_id": user_id, "conversation_id": conversation_id, "position": 0}
        doc = await self._c("messages").find_one(where, sort=[("turn_index", 1)])
        return None if doc is None else str(doc["body"])
