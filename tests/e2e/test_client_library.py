"""agentry_client against the real stack: a dropped socket is resumed without gap or
duplicate, cancel, approve, refusals as exceptions."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from agentry_client import AgentryClient, ConnectionLost, ServerError, TurnFailed
from agentry_shared.contracts.frames import MessageDelta, ToolApprovalRequired, ToolFinished

from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def test_a_dropped_socket_is_resumed_with_every_frame_once(slow_stack: Stack) -> None:
    reconnects: list[int] = []
    async with AgentryClient(slow_stack.ws_url, user="lib-1", on_reconnect=reconnects.append) as client:
        turn = await client.send("count to 60")
        dropped = False
        async with asyncio.timeout(60):
            async for frame in turn:
                if isinstance(frame, MessageDelta) and not dropped and "10" in turn.text.split():
                    assert client._ws is not None
                    client._ws.transport.abort()  # the network drops mid-answer
                    dropped = True
        assert reconnects == [1]
        seqs = [frame.seq for frame in turn.frames]  # the frames of the turn, once each
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # no gap, no duplicate
        assert (await turn.answer()).split() == [str(n) for n in range(1, 61)]
        # The client goes on working on the new socket.
        assert "3367" in await client.ask("what is 37*91?", turn.conversation_id)


async def test_cancel_ends_the_turn_as_failed_cancelled(slow_stack: Stack) -> None:
    async with AgentryClient(slow_stack.ws_url, user="lib-2") as client:
        turn = await client.send("count to 300")
        async with asyncio.timeout(30):
            async for frame in turn:
                if isinstance(frame, MessageDelta):
                    await turn.cancel()
        with pytest.raises(TurnFailed) as failed:
            await turn.answer()
        assert failed.value.code == "cancelled"
        assert "300" not in turn.text


async def test_approve_answers_the_approval_frame(stack: Stack) -> None:
    async with AgentryClient(stack.ws_url, user="lib-3") as client:
        turn = await client.send('save "from the library" to lib.txt')
        async with asyncio.timeout(60):
            async for frame in turn:
                if isinstance(frame, ToolApprovalRequired):
                    await client.approve(frame, True)
        finished = [f for f in turn.frames if isinstance(f, ToolFinished)]
        assert [(f.tool, f.ok) for f in finished] == [("workspace_write", True)]
        assert "from the library" in await client.ask("read lib.txt", turn.conversation_id)


async def test_a_refused_message_raises_server_error(stack: Stack) -> None:
    async with AgentryClient(stack.ws_url, user="lib-4") as owner, AgentryClient(stack.ws_url, user="lib-5") as other:
        mine = await owner.send("hi")
        await mine.wait()
        assert mine.conversation_id is not None
        with pytest.raises(ServerError) as refused:
            await other.ask("hi", mine.conversation_id)
        assert refused.value.code == "forbidden"


async def test_a_frame_sent_while_the_client_gives_up_reconnecting_raises(slow_stack: Stack) -> None:
    """Regression: a frame sent while the client was reconnecting (`cancel` while the gateway
    was down, say) waited for a connection for ever once the client had given up: the caller
    hung (`agentry chat` with it). It now raises ConnectionLost like every other call."""
    port = slow_stack.ports["gateway"]
    async with AgentryClient(slow_stack.ws_url, user="lib-6", reconnect_attempts=3, reconnect_delay=1) as client:
        turn = await client.send("count to 300")
        async with asyncio.timeout(30):
            async for frame in turn:
                if isinstance(frame, MessageDelta):
                    break
        (gateway,) = slow_stack.replicas("gateway")
        socket = client._ws
        assert socket is not None
        try:
            slow_stack.terminate(gateway)  # gone for longer than the client tries to reconnect
            async with asyncio.timeout(30):
                await socket.wait_closed()  # the client reconnects meanwhile
                with pytest.raises(ConnectionLost):
                    await turn.cancel()
        finally:
            slow_stack.wait_ready(slow_stack.start("gateway", port=port))


async def test_list_conversations_returns_the_users_own_newest_first(stack: Stack) -> None:
    """Regression: the client had no `list_conversations`: the gateway's `conversations`
    frame came as an `UnknownFrame`, so a program could not find a conversation to go on in."""
    user = f"lib-list-{uuid.uuid4().hex[:8]}"
    async with AgentryClient(stack.ws_url, user=user) as client, AgentryClient(stack.ws_url, user=f"{user}-x") as other:
        assert await client.list_conversations() == []
        first = await client.send("what is 37*91?")
        await first.wait()
        second = await client.send("count to 3")
        await second.wait()
        await (await other.send("not yours")).wait()
        listed = await client.list_conversations()
        assert [(c.conversation_id, c.title) for c in listed] == [
            (second.conversation_id, "count to 3"),
            (first.conversation_id, "what is 37*91?"),
        ]
        assert listed[0].last_activity_at >= listed[1].last_activity_at
        assert [c.conversation_id for c in await client.list_conversations(limit=1)] == [second.conversation_id]
        # An id from the list is one to go on in (the model sees that conversation's messages).
        again = await client.ask("what was my previous question?", listed[1].conversation_id)
        assert 'You previously asked: "what is 37*91?"' in again
