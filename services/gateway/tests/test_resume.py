"""`resume` and `cancel` against the real broker, with the memory stand-in of conftest
(frames and turns served from its dicts; not the real memory service)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agentry_gateway.server import Gateway
from agentry_shared.contracts.memory import CancelTurnRequest, GetFrames
from agentry_shared.testing import until
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.tests.conftest import Broker, StartGateway, assert_silent, recv_json, recv_seqs

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def resume(ws: ClientConnection, conversation_id: str, after_seq: int, **fields: Any) -> None:
    await ws.send(json.dumps({"type": "resume", "conversation_id": conversation_id, "after_seq": after_seq, **fields}))


# ---- resume ---------------------------------------------------------------------------


async def test_resume_replays_then_follows_live_without_gap_or_duplicate(
    broker: Broker, start_gateway: StartGateway
) -> None:
    """Pages of 3, and while each page is answered the conversation goes on: its new frames
    reach the gateway live, before the page that precedes them. Plus a redelivery."""
    _, url = await start_gateway(replay_page=3)
    conversation = "resume-race"
    broker.memory.owners[conversation] = ("default", "rita")
    for seq in range(1, 8):
        await broker.send_frame(conversation, seq, publish=False)  # before the client came back

    async def conversation_goes_on(request: GetFrames) -> None:
        if request.scope.conversation_id == conversation and len(broker.memory.frames[conversation]) < 10:
            await broker.send_frame(conversation, max(broker.memory.frames[conversation]) + 1)
            await asyncio.sleep(0.05)  # let the live frame reach the gateway before the page does

    broker.memory.while_answering = conversation_goes_on
    try:
        async with connect(f"{url}?user=rita") as ws:
            await resume(ws, conversation, 2, id="r1")
            # 3..7 stored before; 8, 9, 10 stored and published during the replay.
            assert await recv_seqs(ws, 8) == [3, 4, 5, 6, 7, 8, 9, 10]
            await broker.send_frame(conversation, 9, publish=True, store=False)  # a redelivery
            await broker.send_frame(conversation, 11)
            assert await recv_seqs(ws, 1) == [11]
            await assert_silent(ws)
    finally:
        broker.memory.while_answering = None
    fetched = [r for r in broker.memory.requests_of(GetFrames) if r.scope.conversation_id == conversation]
    # First one frame from after_seq on (after_seq is within the conversation), then pages of 3.
    assert [(r.after_seq, r.limit) for r in fetched[:3]] == [(1, 1), (2, 3), (5, 3)]
    assert all(r.limit == 3 for r in fetched[1:])


async def test_resume_replays_frames_as_stored(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    conversation = "resume-body"
    broker.memory.owners[conversation] = ("default", "sam")
    await broker.send_frame(conversation, 1, "turn.completed", publish=False, turn_id="t1", text="café")
    async with connect(f"{gateway[1]}?user=sam") as ws:
        await resume(ws, conversation, 0)
        frame = await recv_json(ws)
        assert frame == {
            "type": "turn.completed",
            "conversation_id": conversation,
            "seq": 1,
            "turn_id": "t1",
            "text": "café",
        }


async def test_resume_gap_when_older_frames_expired(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    conversation = "resume-gap"
    broker.memory.owners[conversation] = ("default", "gus")
    for seq in (5, 6):  # 1..4 are past memory's retention
        await broker.send_frame(conversation, seq, publish=False)
    async with connect(f"{gateway[1]}?user=gus") as ws:
        await resume(ws, conversation, 1, id="g1")
        error = await recv_json(ws)
        assert (error["type"], error["code"], error["id"], error["conversation_id"]) == (
            "error",
            "resume_gap",
            "g1",
            conversation,
        )
        assert "up to seq 4" in error["message"]
        assert await recv_seqs(ws, 2) == [5, 6]


async def test_resume_of_another_users_conversation_is_forbidden(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    conversation = "resume-owned"
    broker.memory.owners[conversation] = ("default", "owner")
    await broker.send_frame(conversation, 1, publish=False)
    async with connect(f"{gateway[1]}?user=mallory") as ws:
        await resume(ws, conversation, 0, id="m1")
        error = await recv_json(ws)
        assert (error["code"], error["id"], error["conversation_id"]) == ("forbidden", "m1", conversation)
        await broker.send_frame(conversation, 2)
        await assert_silent(ws)  # never subscribed


async def test_resume_on_a_socket_already_following_restarts_at_after_seq(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    async with connect(f"{gateway[1]}?user=fay") as ws:
        await ws.send(json.dumps({"type": "message", "text": "hi"}))  # a new conversation, id issued
        conversation = (await broker.log.next()).scope.conversation_id
        for seq in (1, 2, 3):
            await broker.send_frame(conversation, seq)
        assert await recv_seqs(ws, 3) == [1, 2, 3]
        await resume(ws, conversation, 1)
        assert await recv_seqs(ws, 2) == [2, 3]  # as asked, although sent before
        await broker.send_frame(conversation, 4)
        assert await recv_seqs(ws, 1) == [4]


async def test_resume_with_memory_silent_is_unavailable(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    broker.memory.late.add("resume-slow")
    try:
        async with connect(f"{gateway[1]}?user=ula") as ws:
            await resume(ws, "resume-slow", 0, id="u1")
            error = await recv_json(ws)
            assert (error["code"], error["id"]) == ("unavailable", "u1")
    finally:
        broker.memory.late.discard("resume-slow")


async def test_a_long_replay_does_not_block_the_socket(broker: Broker, start_gateway: StartGateway) -> None:
    """2,000 frames in pages of 500 to a client with a send queue of 64: paced, none lost,
    and a cancel sent meanwhile is answered."""
    # Memory's bound as in production, not the claim tests' 0.5 s: a page of 500 frames
    # over the broker can take longer than that on a loaded machine, and the resume fails.
    _, url = await start_gateway(replay_page=500, gateway_send_queue_frames=64, memory_timeout=5.0)
    conversation = "resume-long"
    broker.memory.owners[conversation] = ("default", "lena")
    broker.memory.frames[conversation] = {
        seq: {"type": "message.delta", "conversation_id": conversation, "seq": seq, "text": "x"}
        for seq in range(1, 2001)
    }
    async with connect(f"{url}?user=lena") as ws:
        await resume(ws, conversation, 0)
        await ws.send(json.dumps({"type": "cancel", "turn_id": "no-such-turn", "id": "c1"}))
        seqs: list[int] = []
        errors: list[str] = []
        while len(seqs) < 2000:
            frame = await recv_json(ws)
            if frame["type"] == "error":
                errors.append(frame["code"])
                assert frame["code"] == "not_found", frame  # the cancel's answer, nothing else
            else:
                seqs.append(frame["seq"])
        assert seqs == list(range(1, 2001))
        assert errors == ["not_found"]


# ---- cancel ---------------------------------------------------------------------------


async def cancel(ws: ClientConnection, turn_id: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": "cancel", "turn_id": turn_id, **fields}))


def accepted() -> float:
    return REGISTRY.get_sample_value("agentry_gateway_client_frames_total", {"outcome": "accepted"}) or 0.0


async def test_cancel_asks_memory_and_the_turn_ends_through_the_stream(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    broker.memory.turns["turn-running"] = ("cancel-conv", "running", "cara")
    broker.memory.turns["turn-queued"] = ("cancel-conv", "queued", "cara")
    before = accepted()
    async with connect(f"{gateway[1]}?user=cara") as ws:
        await cancel(ws, "turn-running", id="k1")
        await cancel(ws, "turn-queued")
        await until(lambda: accepted() == before + 2, "both cancels handled")  # handled: the silence means something
        await assert_silent(ws)  # accepted: nothing now
    sent = [r for r in broker.memory.requests_of(CancelTurnRequest) if r.user_id == "cara"]
    assert [(r.tenant_id, r.user_id, r.turn_id) for r in sent] == [
        ("default", "cara", "turn-running"),
        ("default", "cara", "turn-queued"),
    ]


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
async def test_cancel_of_a_finished_turn(broker: Broker, gateway: tuple[Gateway, str], state: str) -> None:
    broker.memory.turns[f"turn-{state}"] = ("cancel-done", state, "dora")  # type: ignore[assignment]
    async with connect(f"{gateway[1]}?user=dora") as ws:
        await cancel(ws, f"turn-{state}", id="k2")
        error = await recv_json(ws)
        assert (error["type"], error["code"], error["id"], error["conversation_id"]) == (
            "error",
            "turn_not_active",
            "k2",
            "cancel-done",
        )
        assert state in error["message"]


async def test_cancel_refusals(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    broker.memory.turns["turn-of-other"] = ("cancel-other", "running", "owner")
    broker.memory.turns["turn-slow"] = ("cancel-slow", "running", "eve")
    broker.memory.late.add("turn-slow")
    try:
        async with connect(f"{gateway[1]}?user=eve") as ws:
            await cancel(ws, "never-existed", id="a")
            await cancel(ws, "turn-of-other", id="b")
            await cancel(ws, "turn-slow", id="c")
            await ws.send('{"type": "cancel", "id": "d"}')
            codes = {frame["id"]: frame["code"] for frame in [await recv_json(ws) for _ in range(4)]}
            assert codes == {"a": "not_found", "b": "forbidden", "c": "unavailable", "d": "invalid_cancel"}
    finally:
        broker.memory.late.discard("turn-slow")
