"""The `list_conversations` frame: the user's conversations, from memory, to this socket.

Over the socket rather than an HTTP GET: the page already holds an authenticated socket
(the development identity or a token checked at the handshake, with its expiry and
`reauth`), so the list needs no second way to authenticate, and the socket's frame rate
limit bounds how often a client asks. The answer is not a conversation frame: it has no
`seq` and goes to this socket only, like an `error`.
"""

from __future__ import annotations

from agentry_shared.contracts.frames import ConversationList, ListConversations

from agentry_gateway.auth import Identity
from agentry_gateway.memory_client import MemoryClient


async def conversation_list(memory: MemoryClient, identity: Identity, frame: ListConversations) -> ConversationList:
    """The answer to `frame`; `inbound.Rejected` (`unavailable`) when memory does not answer."""
    listed = await memory.conversations(identity.tenant_id, identity.user_id, frame.limit)
    return ConversationList(conversations=listed, id=frame.id)
