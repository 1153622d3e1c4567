"""The gateway against the real RabbitMQ with real sockets (see conftest for the stand-ins)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from agentry_gateway.server import Gateway
from agentry_shared.contracts.turns import TurnRequested
from prometheus_client import REGISTRY
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.gateway.tests.conftest import Broker, StartGateway, assert_silent, issued, recv_json, send_message

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "integration-secret-0123456789abcdef"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def published(broker: Broker, ws: ClientConnection, text: str, **fields: Any) -> TurnRequested:
    """Send a message and return the turn the gateway published for it."""
    await send_message(ws, text, **fields)
    turn = await broker.log.next()
    assert turn.text == text
    return turn


async def test_http_endpoints(gateway: tuple[Gateway, str]) -> None:
    base = gateway[1].replace("ws://", "http://").removesuffix("/ws")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json()) == {"status": "ok"}
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200
            assert "agentry_gateway_connections" in await r.text()
        async with http.get(f"{base}/nope") as r:
            assert r.status == 404


async def test_turn_published_and_frames_fan_out(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    url = gateway[1]
    async with connect(f"{url}?user=alice") as a, connect(f"{url}?user=alice") as b, connect(f"{url}?user=carol") as c:
        first = await published(broker, a, "hello", id="m1")
        conversation = first.scope.conversation_id
        assert (first.scope.tenant_id, first.scope.user_id) == ("default", "alice")
        assert first.client_message_id == "m1" and len(first.turn_id) == 32
        assert broker.topology.partition(conversation) in range(4)

        second = await published(broker, b, "me too", conversation_id=conversation)
        assert second.scope == first.scope and second.client_message_id is None
        other = await published(broker, c, "elsewhere")  # carol's own, server-issued
        assert other.scope.user_id == "carol"

        for seq in (1, 2):
            await broker.send_frame(conversation, seq, "message.accepted", id="m1")
        await broker.send_frame(conversation, 2)  # redelivered: must not reach anyone twice
        await broker.send_frame(conversation, 3, "turn.started", turn_id=first.turn_id)
        for ws in (a, b):
            assert [(f["seq"], f["type"]) for f in [await recv_json(ws) for _ in range(3)]] == [
                (1, "message.accepted"),
                (2, "message.accepted"),
                (3, "turn.started"),
            ]
        await assert_silent(c)  # another conversation never sees these
        await broker.send_frame(other.scope.conversation_id, 1, "message.accepted")
        assert (await recv_json(c))["conversation_id"] == other.scope.conversation_id
        await assert_silent(a, 0.1)
        await assert_silent(b, 0.1)
    assert broker.log.empty()


async def test_frame_is_forwarded_as_received(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    async with connect(gateway[1]) as ws:
        turn = await published(broker, ws, "verbatim")
        body = b'{"type":"message.delta","conversation_id":"%s","seq":1,  "text":"caf\xc3\xa9"}' % (
            turn.scope.conversation_id.encode()
        )
        await broker.bus.publish(broker.topology.frames_exchange, turn.scope.conversation_id, body)
        assert (await asyncio.wait_for(ws.recv(decode=False), 5)) == body


async def test_the_frames_of_one_message_go_out_one_by_one_in_order(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    """Memory fans a log entry's frames out as one message, a frame per line: each goes to
    the socket as its own WebSocket message, byte for byte; a malformed line costs only
    itself, and a line claiming another conversation is dropped, never delivered."""
    async with connect(gateway[1]) as ws:
        turn = await published(broker, ws, "batched")
        conversation = turn.scope.conversation_id
        lines = [
            b'{"type":"turn.started","conversation_id":"%s","seq":1}' % conversation.encode(),
            b'{"type":"message.delta","conversation_id":"%s","seq":2,"text":"a"}' % conversation.encode(),
            b"not json",
            b'{"type":"message.delta","conversation_id":"someone-else","seq":3,"text":"leak"}',
            b'{"type":"message.delta","conversation_id":"%s","seq":4,"text":"b"}' % conversation.encode(),
        ]
        await broker.bus.publish(broker.topology.frames_exchange, conversation, b"\n".join(lines), persistent=False)
        received = [await asyncio.wait_for(ws.recv(decode=False), 5) for _ in range(3)]
        assert received == [lines[0], lines[1], lines[4]]
        await assert_silent(ws, 0.2)


async def test_other_users_conversation_is_forbidden(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    async with connect(f"{gateway[1]}?user=owner") as owner, connect(f"{gateway[1]}?user=mallory") as mallory:
        turn = await published(broker, owner, "mine")
        await send_message(mallory, "let me in", conversation_id=turn.scope.conversation_id, id="x1")
        error = await recv_json(mallory)
        assert (error["type"], error["code"], error["id"]) == ("error", "forbidden", "x1")
        await broker.send_frame(turn.scope.conversation_id, 1)
        assert (await recv_json(owner))["seq"] == 1
        await assert_silent(mallory)  # never subscribed
        await published(broker, mallory, "my own")  # still usable
    assert broker.log.empty()


BAD_INPUTS: list[tuple[str | bytes, str]] = [
    ("not json", "invalid_json"),
    ('["a", "b"]', "invalid_frame"),
    ('{"text": "no type"}', "unknown_type"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "message"}', "invalid_message"),
    ('{"type": "message", "text": ""}', "invalid_message"),
    ('{"type": "message", "text": "   "}', "invalid_message"),
    ('{"type": "message", "text": 12}', "invalid_message"),
    ('{"type": "message", "text": "hi", "extra": true}', "invalid_message"),
    (json.dumps({"type": "message", "text": "x" * 1001}), "text_too_long"),
    (json.dumps({"type": "message", "text": "x" * 5000}), "frame_too_large"),  # limit 4096, hard cap 16384
    (b'{"type": "message", "text": "binary"}', "binary_not_supported"),
]


async def test_bad_inputs_get_error_frames_and_socket_stays_usable(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    invalid_json = sample("agentry_gateway_client_frames_total", outcome="invalid_json")
    accepted = sample("agentry_gateway_client_frames_total", outcome="accepted")
    errors_sent = sample("agentry_gateway_frames_sent_total", type="error")
    async with connect(gateway[1]) as ws:
        for data, code in BAD_INPUTS:
            await ws.send(data)
            error = await recv_json(ws)
            assert (error["type"], error["code"]) == ("error", code), data
            assert isinstance(error["message"], str) and error["message"]
        await ws.send('{"type": "message", "text": "", "id": "echo-me"}')
        assert (await recv_json(ws))["id"] == "echo-me"
        assert broker.log.empty()
        await published(broker, ws, "finally valid")
    assert sample("agentry_gateway_client_frames_total", outcome="invalid_json") == invalid_json + 1
    assert sample("agentry_gateway_client_frames_total", outcome="accepted") == accepted + 1
    assert sample("agentry_gateway_frames_sent_total", type="error") == errors_sent + len(BAD_INPUTS) + 1


async def test_frame_above_hard_cap_closes_1009(gateway: tuple[Gateway, str]) -> None:
    async with connect(gateway[1]) as ws:
        await ws.send(json.dumps({"type": "message", "text": "x" * 20_000}))
        with pytest.raises(ConnectionClosed) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_rate_limited(broker: Broker, start_gateway: StartGateway) -> None:
    _, url = await start_gateway(gateway_max_frames_per_second=2.0)  # burst 4
    async with connect(url) as ws:
        for _ in range(6):
            await ws.send("{}")
        codes = [(await recv_json(ws))["code"] for _ in range(5)]
        assert codes == ["unknown_type"] * 4 + ["rate_limited"]
        await assert_silent(ws, 0.2)  # one notice per window: the 6th frame is dropped unanswered
        await asyncio.sleep(0.6)
        await published(broker, ws, "after a pause")


async def test_memory_silent_is_unavailable(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    broker.memory.late.add(issued(broker, "dev", "slow-conv"))
    async with connect(gateway[1]) as ws:
        await send_message(ws, "anyone?", conversation_id="slow-conv", id="s1")
        error = await recv_json(ws)
        assert (error["code"], error["id"], error["conversation_id"]) == ("unavailable", "s1", "slow-conv")
        broker.memory.late.discard("slow-conv")
        await asyncio.sleep(1.0)  # let the late answer to the first claim arrive and be ignored
        await published(broker, ws, "retry", conversation_id="slow-conv")


async def test_unroutable_turn_is_unavailable(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    """No log queue for the partition (memory never declared it): refuse, don't drop silently."""
    conversation = issued(broker, "dev", "unroutable-1")
    partition = str(broker.topology.partition(conversation))
    queue = await broker.channel.get_queue(broker.topology.log_queue(int(partition)))
    await queue.unbind(broker.topology.log_exchange, partition)
    try:
        async with connect(gateway[1]) as ws:
            await send_message(ws, "lost?", conversation_id=conversation, id="u1")
            error = await recv_json(ws)
            assert (error["code"], error["id"]) == ("unavailable", "u1")
    finally:
        await queue.bind(broker.topology.log_exchange, partition)
    assert broker.log.empty()


async def test_jwt_mode(broker: Broker, start_gateway: StartGateway) -> None:
    _, url = await start_gateway(auth_jwt_secret=SecretStr(SECRET), auth_jwt_audience="agentry")
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{url}?token=not-a-jwt"):
            pass
    assert info.value.response.status_code == 401
    expired = jwt.encode({"sub": "alice", "aud": "agentry", "exp": int(time.time()) - 120}, SECRET, "HS256")
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers={"Authorization": f"Bearer {expired}"}):
            pass
    assert info.value.response.status_code == 401

    good = jwt.encode({"sub": "alice", "tenant": "acme", "aud": "agentry"}, SECRET, "HS256")
    async with connect(url, additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        turn = await published(broker, ws, "with a header token")
        assert (turn.scope.tenant_id, turn.scope.user_id) == ("acme", "alice")
    async with connect(f"{url}?token={good}&user=mallory") as ws:
        turn = await published(broker, ws, "with a query token")
        assert turn.scope.user_id == "alice"


async def test_two_gateways_share_a_conversation(broker: Broker, start_gateway: StartGateway) -> None:
    first, first_url = await start_gateway()
    second, second_url = await start_gateway()
    async with connect(f"{first_url}?user=dana") as a, connect(f"{second_url}?user=dana") as b:
        turn = await published(broker, a, "from one")
        conversation = turn.scope.conversation_id
        await published(broker, b, "from two", conversation_id=conversation)
        assert conversation in first.fanout.bound and conversation in second.fanout.bound
        await broker.send_frame(conversation, 1)
        assert (await recv_json(a))["seq"] == (await recv_json(b))["seq"] == 1
    # The last local socket left: each gateway unbinds the conversation.
    for _ in range(50):
        if conversation not in first.fanout.bound and conversation not in second.fanout.bound:
            break
        await asyncio.sleep(0.05)
    assert conversation not in first.fanout.bound and conversation not in second.fanout.bound


async def test_slow_consumer_is_closed_1013(broker: Broker, start_gateway: StartGateway) -> None:
    _, url = await start_gateway(gateway_send_queue_frames=16)
    before = sample("agentry_gateway_slow_consumer_disconnects_total")
    # max_queue=1: the client stops reading the TCP stream after one buffered message;
    # no compression, or the padding would shrink to nothing on the wire.
    async with connect(url, max_queue=1, max_size=None, compression=None) as slow, connect(url) as fast:
        turn = await published(broker, slow, "flood me")
        conversation = turn.scope.conversation_id
        other = await published(broker, fast, "me not")
        padding = "x" * 256_000
        for seq in range(1, 400):
            await broker.send_frame(conversation, seq, text=padding)
            if sample("agentry_gateway_slow_consumer_disconnects_total") > before:
                break
        else:
            pytest.fail("the send queue never overflowed")
        # The other socket of the same gateway is not slowed down.
        await broker.send_frame(other.scope.conversation_id, 1)
        assert (await recv_json(fast))["seq"] == 1
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(slow.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        # The close names the limit and what to do (its reason is all a client gets).
        assert "GATEWAY_SEND_QUEUE_FRAMES" in info.value.rcvd.reason and "resume" in info.value.rcvd.reason


async def test_stop_closes_sockets_1001(start_gateway: StartGateway) -> None:
    gateway, url = await start_gateway()
    async with connect(url) as ws:
        await gateway.stop(2.0)
        with pytest.raises(ConnectionClosed) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert gateway.ready()[0] is False
