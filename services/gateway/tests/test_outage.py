"""Broker outages: catch-up after a reconnect, `unavailable` while down, start without a broker.

The shared broker is never restarted. Two ways stand in for an outage:
- calling the gateway's connection-lost and reconnected hooks directly (what aio-pika
  calls), with frames stored in the memory stand-in but never published, as frames
  published during an outage never reach the gateway's queue;
- `broker_proxy` (conftest, a `CuttableProxy`): the gateway talks to the broker through
  a TCP relay the test cuts, so its connection really drops, the broker really deletes its exclusive queue and
  aio-pika really reconnects and restores the queue and its bindings.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from agentry_gateway.server import Gateway
from agentry_shared.contracts.memory import GetFrames
from agentry_shared.testing import NO_ARGUMENTS, CuttableProxy, until
from websockets.asyncio.client import connect

from services.gateway.tests.conftest import Broker, StartGateway, assert_silent, recv_json, recv_seqs, send_message

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def wait_ready(gateway: Gateway, ready: bool, timeout: float = 10.0) -> None:
    """Poll: readiness is a property of the broker connection, with no event to wait on."""
    for _ in range(int(timeout / 0.05)):
        if gateway.ready()[0] is ready:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"gateway never became {'ready' if ready else 'unready'}")


async def readyz(url: str) -> int:
    base = url.replace("ws://", "http://").removesuffix("/ws")
    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as response:
        return response.status


# ---- the hooks, called directly ---------------------------------------------------------


async def test_catch_up_after_reconnect_hooks(broker: Broker, start_gateway: StartGateway) -> None:
    """Simulated outage: the hooks aio-pika calls, called by the test (the broker stays up)."""
    gateway, url = await start_gateway()
    connection = gateway.bus.connection
    async with connect(f"{url}?user=olga") as ws:
        await send_message(ws, "before the outage")  # a new conversation: its id is issued
        conversation = (await broker.log.next()).scope.conversation_id
        await broker.send_frame(conversation, 1)
        assert await recv_seqs(ws, 1) == [1]

        gateway._on_broker_lost(connection, None)
        await broker.send_frame(conversation, 2, publish=False)  # published during the outage: lost
        await broker.send_frame(conversation, 3, publish=False)
        await broker.send_frame(conversation, 4)  # after the reconnect, before the catch-up
        await assert_silent(ws)  # held: 2 and 3 come first

        gateway._on_broker_back(connection)
        assert await recv_seqs(ws, 3) == [2, 3, 4]
        await broker.send_frame(conversation, 4)  # a redelivery
        await broker.send_frame(conversation, 5)
        assert await recv_seqs(ws, 1) == [5]
    fetches = [r for r in broker.memory.requests_of(GetFrames) if r.scope.conversation_id == conversation]
    assert [r.after_seq for r in fetches] == [1]


async def test_catch_up_of_a_new_conversation_starts_at_zero(broker: Broker, start_gateway: StartGateway) -> None:
    """A socket that started the conversation knows it has seen all of it (nothing yet)."""
    gateway, url = await start_gateway()
    connection = gateway.bus.connection
    async with connect(f"{url}?user=nina") as ws:
        await send_message(ws, "new one", id="n1")
        conversation = (await broker.log.next()).scope.conversation_id
        gateway._on_broker_lost(connection, None)
        await broker.send_frame(conversation, 1, "message.accepted", publish=False, id="n1")
        gateway._on_broker_back(connection)
        frame = await recv_json(ws)
        assert (frame["type"], frame["seq"], frame["id"]) == ("message.accepted", 1, "n1")


async def test_catch_up_without_a_known_position_asks_the_client_to_resume(
    broker: Broker, start_gateway: StartGateway
) -> None:
    """Joined an existing conversation, no frame yet: where to start is unknown."""
    gateway, url = await start_gateway()
    connection = gateway.bus.connection
    broker.memory.owners["outage-unknown"] = ("default", "ivan")
    async with connect(f"{url}?user=ivan") as ws:
        await send_message(ws, "join", conversation_id="outage-unknown")
        await broker.log.next()
        gateway._on_broker_lost(connection, None)
        await broker.send_frame("outage-unknown", 8)  # held
        gateway._on_broker_back(connection)
        error = await recv_json(ws)
        assert (error["code"], error["conversation_id"]) == ("resume_required", "outage-unknown")
        assert await recv_seqs(ws, 1) == [8]  # what was held still comes, in order


async def test_catch_up_with_memory_down_asks_the_client_to_resume(broker: Broker, start_gateway: StartGateway) -> None:
    """Memory does not answer within the retry budget (60 s by default, 1 s here)."""
    gateway, url = await start_gateway(outage_retry_seconds=1.0)
    connection = gateway.bus.connection
    async with connect(f"{url}?user=mona") as ws:
        await send_message(ws, "hello")  # a new conversation: its id is issued
        conversation = (await broker.log.next()).scope.conversation_id
        await broker.send_frame(conversation, 1)
        assert await recv_seqs(ws, 1) == [1]
        gateway._on_broker_lost(connection, None)
        broker.memory.late.add(conversation)
        try:
            gateway._on_broker_back(connection)
            error = await recv_json(ws, timeout=10)
            assert (error["code"], error["conversation_id"]) == ("resume_required", conversation)
        finally:
            broker.memory.late.discard(conversation)
        await broker.send_frame(conversation, 2)
        assert await recv_seqs(ws, 1) == [2]  # live again


async def test_catch_up_waits_for_memory_to_come_back(broker: Broker, start_gateway: StartGateway) -> None:
    """After a broker restart memory may reconnect later than the gateway: keep trying."""
    gateway, url = await start_gateway()
    connection = gateway.bus.connection
    async with connect(f"{url}?user=lisa") as ws:
        await send_message(ws, "hello")  # a new conversation: its id is issued
        conversation = (await broker.log.next()).scope.conversation_id
        await broker.send_frame(conversation, 1)
        assert await recv_seqs(ws, 1) == [1]
        gateway._on_broker_lost(connection, None)
        await broker.send_frame(conversation, 2, publish=False)
        broker.memory.late.add(conversation)
        gateway._on_broker_back(connection)
        await until(  # not a guessed sleep: on a slow machine the first fetch may not even be out yet
            lambda: sum(r.scope.conversation_id == conversation for r in broker.memory.requests_of(GetFrames)) >= 2,
            "a second fetch: the first timed out and was tried again",
        )
        broker.memory.late.discard(conversation)
        assert await recv_seqs(ws, 1) == [2]


async def test_resume_interrupted_by_an_outage_completes_after_it(broker: Broker, start_gateway: StartGateway) -> None:
    gateway, url = await start_gateway(replay_page=2)
    connection = gateway.bus.connection
    conversation = "outage-during-resume"
    broker.memory.owners[conversation] = ("default", "pia")
    for seq in range(1, 6):
        await broker.send_frame(conversation, seq, publish=False)
    answered = 0
    lost = asyncio.Event()

    async def outage_after_first_page(request: GetFrames) -> None:
        nonlocal answered
        answered += 1
        if answered == 1:
            gateway._on_broker_lost(connection, None)  # the page in flight is lost with the channel
            await broker.send_frame(conversation, 6, publish=False)
            lost.set()

    broker.memory.while_answering = outage_after_first_page
    try:
        async with connect(f"{url}?user=pia") as ws:
            await ws.send(json.dumps({"type": "resume", "conversation_id": conversation, "after_seq": 0}))
            await asyncio.wait_for(lost.wait(), 10)
            gateway._on_broker_back(connection)
            assert await recv_seqs(ws, 6) == [1, 2, 3, 4, 5, 6]
            await assert_silent(ws)
    finally:
        broker.memory.while_answering = None


# ---- a real connection loss (TCP relay cut) ---------------------------------------------


async def test_reconnect_restores_bindings_and_catches_up(
    broker: Broker, broker_proxy: CuttableProxy, proxy_url: str, start_own_gateway: StartGateway
) -> None:
    broker_proxy.mend()
    gateway, url = await start_own_gateway(amqp_url=proxy_url)
    async with connect(f"{url}?user=pete") as ws:
        await send_message(ws, "before")  # a new conversation: its id is issued
        conversation = (await broker.log.next()).scope.conversation_id
        await broker.send_frame(conversation, 1)
        assert await recv_seqs(ws, 1) == [1]

        broker_proxy.cut()
        await wait_ready(gateway, False)
        assert await readyz(url) == 503
        started = time.monotonic()
        await send_message(ws, "during", conversation_id=conversation, id="d1")
        error = await recv_json(ws)
        assert (error["code"], error["id"]) == ("unavailable", "d1")
        assert time.monotonic() - started < 1.0  # at once, not after a timeout
        await broker.send_frame(conversation, 2)  # nobody bound: lost to the gateway
        await broker.send_frame(conversation, 3)

        broker_proxy.mend()
        await wait_ready(gateway, True)
        assert await recv_seqs(ws, 2) == [2, 3]  # caught up from memory
        await broker.send_frame(conversation, 4)  # the binding came back with the queue
        assert await recv_seqs(ws, 1) == [4]
        assert conversation in gateway.fanout.bound
        await send_message(ws, "after", conversation_id=conversation)
        assert (await broker.log.next()).text == "after"
    assert await readyz(url) == 200


async def test_starts_without_a_broker_and_connects_when_it_appears(
    broker: Broker, broker_proxy: CuttableProxy, proxy_url: str, start_own_gateway: StartGateway
) -> None:
    gateway, url = await start_own_gateway(amqp_url=proxy_url, connect=False)  # the relay refuses it yet
    assert gateway.ready() == (False, "broker disconnected")
    assert await readyz(url) == 503
    async with connect(f"{url}?user=quinn") as ws:
        started = time.monotonic()
        await send_message(ws, "anyone?", id="q1")
        await ws.send(json.dumps({"type": "resume", "conversation_id": "nowhere", "id": "q2"}))
        await ws.send(json.dumps({"type": "cancel", "turn_id": "t", "id": "q3"}))
        codes = {frame["id"]: frame["code"] for frame in [await recv_json(ws) for _ in range(3)]}
        assert codes == {"q1": "unavailable", "q2": "unavailable", "q3": "unavailable"}
        assert time.monotonic() - started < 1.0

        broker_proxy.mend()
        await wait_ready(gateway, True, timeout=15)
        await send_message(ws, "now?", id="q4")  # the same socket
        assert (await broker.log.next()).client_message_id == "q4"


async def test_memory_requests_work_after_repeated_reconnects(
    broker: Broker, broker_proxy: CuttableProxy, proxy_url: str, start_own_gateway: StartGateway
) -> None:
    """`Bus.request`'s reply consumer comes back with its channel, every time: each answer
    below is a real reply from memory (`not_found`), not `unavailable`."""
    broker_proxy.mend()
    gateway, url = await start_own_gateway(amqp_url=proxy_url)
    broker.memory.store_approval("outage-call", "rita", "outage-approve")
    async with connect(f"{url}?user=rita") as ws:
        for cut in range(3):
            nothing = {"turn_id": "turn-nothing-asked", "call_id": "nothing-asked", "args_sha256": NO_ARGUMENTS}
            await ws.send(json.dumps({"type": "approve", **nothing, "approved": True, "id": "n"}))
            error = await recv_json(ws)
            assert (error["code"], cut) == ("not_found", cut)
            broker_proxy.cut()
            await wait_ready(gateway, False)
            broker_proxy.mend()
            await wait_ready(gateway, True)
        asked = {"turn_id": "turn-outage-call", "call_id": "outage-call", "args_sha256": NO_ARGUMENTS}
        await ws.send(json.dumps({"type": "approve", **asked, "approved": True}))
        await assert_silent(ws)
    assert broker.memory.approvals["outage-call"].state == "approved"
