"""Per-socket and per-user limits: a client that hits one is told which, and when to
retry if retrying helps; the socket stays usable."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from agentry_gateway.server import Gateway
from agentry_shared.contracts.memory import ClaimConversation, MemoryFailure, TurnAdmission
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.gateway.tests.conftest import Broker, StartGateway, issued, recv_json, recv_seqs, send_message

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def drain(ws: ClientConnection, quiet: float = 0.5, first: float = 30.0) -> list[dict[str, object]]:
    """Every frame the gateway sends until it has been quiet for `quiet` seconds, counted
    from its first answer (waited for up to `first` seconds): the gateway runs in this
    test's event loop, and a stall before it answers (a full collection on a suite-sized
    heap, a busy VM) once ended the drain before any frame (a fresh-clone CI run at 753f870)."""
    frames = [json.loads(await asyncio.wait_for(ws.recv(), first))]
    while True:
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return frames


async def test_a_flood_is_rate_limited_not_disconnected(broker: Broker, start_gateway: StartGateway) -> None:
    _, url = await start_gateway(gateway_max_frames_per_second=20.0, gateway_send_queue_frames=64)
    async with connect(url + "?user=flooder") as ws:
        for _ in range(3000):
            await ws.send("{}")
        frames = await drain(ws)
        limited = [f for f in frames if f["code"] == "rate_limited"]
        assert limited, frames
        # The first 40 (the burst) are answered, and about one notice per window after.
        assert len(limited) <= 10, len(limited)
        assert all(isinstance(f["retry_after_ms"], int) and 0 < f["retry_after_ms"] <= 1000 for f in limited)
        assert "GATEWAY_MAX_FRAMES_PER_SECOND" in str(limited[0]["message"])
        await asyncio.sleep(0.2)
        await send_message(ws, "after the flood", id="after")
        turn = await broker.log.next()
        assert turn.text == "after the flood"


async def test_naming_an_unknown_conversation_creates_nothing(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    """Ids are issued by the server: a resume or message naming another id is `not_found`,
    with no conversation in memory and no binding on the broker."""
    gw, url = gateway
    names = [f"squat-{uuid.uuid4().hex}" for _ in range(60)]
    async with connect(url + "?user=squatter") as ws:
        for n, name in enumerate(names):
            resume = {"type": "resume", "conversation_id": name}
            kind = resume if n % 2 else {"type": "message", "text": "hi", "conversation_id": name}
            await ws.send(json.dumps({**kind, "id": f"q{n}"}))
            error = await recv_json(ws)
            assert (error["code"], error["id"], error["conversation_id"]) == ("not_found", f"q{n}", name)
    assert not set(names) & set(broker.memory.owners)
    assert not set(names) & gw.fanout.bound
    assert broker.log.empty()


async def test_followed_conversations_per_socket_are_bounded(broker: Broker, start_gateway: StartGateway) -> None:
    _, url = await start_gateway(gateway_max_followed_conversations=2)
    async with connect(url + "?user=follower") as ws:
        for text in ("one", "two"):
            await send_message(ws, text)
            await broker.log.next()
        await send_message(ws, "three", id="m3")
        error = await recv_json(ws)
        assert (error["code"], error["id"]) == ("follow_limit", "m3")
        assert "GATEWAY_MAX_FOLLOWED_CONVERSATIONS (2)" in error["message"] and "retry_after_ms" not in error
        assert broker.log.empty()


async def test_sockets_per_user_are_bounded(start_gateway: StartGateway) -> None:
    _, url = await start_gateway(gateway_max_sockets_per_user=2)
    async with (
        connect(url + "?user=many"),
        connect(url + "?user=many"),
        connect(url + "?user=other"),
        connect(url + "?user=many") as third,
    ):
        error = await recv_json(third)
        assert error["code"] == "socket_limit" and "GATEWAY_MAX_SOCKETS_PER_USER (2)" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await third.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with connect(url + "?user=many") as again:  # the count went down with the sockets
        await send_message(again, "")
        assert (await recv_json(again))["code"] == "invalid_message"


async def test_size_refusals_name_their_setting(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    """Regression: `frame_too_large` and `text_too_long` gave only a number ("frame is larger
    than 4096 bytes"), unlike every other limit, which names the setting an operator can
    change; neither says to wait (retrying the same frame cannot help)."""
    async with connect(gateway[1] + "?user=big") as ws:
        await send_message(ws, "x" * 5000, id="m1")  # over 4096 bytes, under the hard cap
        await send_message(ws, "x" * 1001, id="m2")  # over 1000 characters
        too_large, too_long = await recv_json(ws), await recv_json(ws)
        assert too_large["code"] == "frame_too_large" and "GATEWAY_MAX_FRAME_BYTES (4096)" in too_large["message"]
        assert (too_long["code"], too_long["id"]) == ("text_too_long", "m2")
        assert "GATEWAY_MAX_TEXT_CHARS (1000)" in too_long["message"]
        assert "retry_after_ms" not in too_large and "retry_after_ms" not in too_long
        await send_message(ws, "small", id="m3")
        assert (await broker.log.next()).client_message_id == "m3"


@pytest.mark.parametrize(
    ("admission", "code"),
    [
        (
            TurnAdmission(
                allowed=False, code="rate_limited", limit="BUDGET_USER_TURNS_PER_MINUTE", retry_after_seconds=30
            ),
            "rate_limited",
        ),
        (MemoryFailure(code="internal", message="the memory service failed"), "unavailable"),
    ],
)
async def test_a_refused_first_message_leaves_no_conversation_behind(
    broker: Broker, start_gateway: StartGateway, admission: TurnAdmission | MemoryFailure, code: str
) -> None:
    """Regression: a `message` without `conversation_id` refused after its conversation was
    created (over a turn budget, `unavailable`) left that conversation, empty, in memory and
    followed by the socket: each retry made one more "(untitled)" conversation toward
    MEMORY_MAX_CONVERSATIONS_PER_USER, and took a GATEWAY_MAX_FOLLOWED_CONVERSATIONS slot
    (the third retry here was `follow_limit`). A refusal now leaves nothing: no
    conversation, no binding, no `conversation_id` to retry in."""
    gw, url = await start_gateway(gateway_max_followed_conversations=2, budget_user_turns_per_minute=5)
    user = f"refused-{uuid.uuid4().hex[:8]}"
    broker.memory.admissions[user] = admission
    async with connect(f"{url}?user={user}") as ws:
        for n in range(3):
            await send_message(ws, "hello", id=f"m{n}")
            error = await recv_json(ws)
            assert (error["code"], error["id"]) == (code, f"m{n}"), error
            assert "conversation_id" not in error
        created = {
            c.scope.conversation_id for c in broker.memory.requests_of(ClaimConversation) if c.scope.user_id == user
        }
        assert len(created) == 3
        assert not created & broker.memory.owners.keys()
        assert not created & gw.fanout.bound
        assert broker.log.empty()
        del broker.memory.admissions[user]
        await send_message(ws, "now within budget", id="ok")
        turn = await broker.log.next()
        assert (turn.client_message_id, turn.scope.user_id) == ("ok", user)
        assert turn.scope.conversation_id in broker.memory.owners


async def test_a_refused_resume_takes_no_follow_slot(broker: Broker, start_gateway: StartGateway) -> None:
    """Regression: a `resume` refused after its ownership claim (`invalid_resume` past the
    conversation's end) still counted toward GATEWAY_MAX_FOLLOWED_CONVERSATIONS, so a few
    refusals left a socket that could follow nothing (`follow_limit`). A refused resume now
    gives the slot back, unless the socket followed the conversation before it."""
    gw, url = await start_gateway(gateway_max_followed_conversations=2)
    user = f"refollow-{uuid.uuid4().hex[:8]}"
    a, b, c = (issued(broker, user, f"{user}-{name}") for name in "abc")
    for conversation in (a, b, c):
        for seq in (1, 2):
            await broker.send_frame(conversation, seq, publish=False)

    async def resume(conversation: str, after_seq: int) -> None:
        await ws.send(json.dumps({"type": "resume", "conversation_id": conversation, "after_seq": after_seq}))

    async with connect(f"{url}?user={user}") as ws:
        for conversation in (a, b):
            await resume(conversation, 9)
            assert (await recv_json(ws))["code"] == "invalid_resume"
        assert not {a, b} & gw.fanout.bound
        await resume(c, 0)
        replayed = await recv_json(ws)
        assert (replayed.get("conversation_id"), replayed.get("seq")) == (c, 1), replayed  # was `follow_limit`
        assert await recv_seqs(ws, 1) == [2]
        await resume(a, 0)
        assert await recv_seqs(ws, 2) == [1, 2]
        await resume(a, 9)  # refused, but a was followed before: it still is
        assert (await recv_json(ws))["code"] == "invalid_resume"
        await broker.send_frame(a, 3)
        assert await recv_seqs(ws, 1) == [3]
        await resume(b, 0)  # a and c fill the socket's two slots
        assert (await recv_json(ws))["code"] == "follow_limit"
