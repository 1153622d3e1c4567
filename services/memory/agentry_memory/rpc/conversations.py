"""Answers the request for a user's conversations (the web page's list).

Named by tenant and user, not by a conversation's `Scope`: it reads only what those two
own, so there is no conversation to check ownership of.
"""

from __future__ import annotations

from agentry_shared.contracts.memory import Conversations, ListConversations

from agentry_memory.store import Store

CONVERSATION_REQUESTS = (ListConversations,)


async def answer_conversation_request(store: Store, request: ListConversations) -> Conversations:
    listed = await store.list_conversations(request.tenant_id, request.user_id, request.limit)
    return Conversations(conversations=listed)
