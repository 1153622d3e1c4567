"""Frames a hostile or buggy client sends on purpose: each costs one error frame, never the
socket, a retryable answer to a client mistake, or a traceback in the log."""

from __future__ import annotations

import json
import logging

import pytest
from agentry_gateway import inbound
from agentry_gateway.server import Gateway
from agentry_shared.contracts.frames import MAX_CLIENT_INT, ErrorFrame, Resume, SendMessage
from websockets.asyncio.client import connect

from services.gateway.tests.conftest import Broker, issued, recv_json, send_message

LIMITS = inbound.Limits(max_frame_bytes=1024, max_text_chars=100)


def refused(data: str) -> ErrorFrame:
    result = inbound.parse(data, LIMITS)
    assert isinstance(result, ErrorFrame), result
    return result


@pytest.mark.parametrize("after_seq", [2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**400])
def test_after_seq_beyond_the_bound_is_the_clients_mistake(after_seq: int) -> None:
    error = refused(json.dumps({"type": "resume", "conversation_id": "c1", "after_seq": after_seq, "id": "r1"}))
    assert (error.code, error.id) == ("invalid_resume", "r1")
    assert error.message.startswith("after_seq")


def test_after_seq_at_the_bound_is_accepted() -> None:
    frame = inbound.parse(json.dumps({"type": "resume", "conversation_id": "c1", "after_seq": MAX_CLIENT_INT}), LIMITS)
    assert isinstance(frame, Resume) and frame.after_seq == 2**53


# ---- lone surrogates: JSON can spell them (`"\ud800"`), UTF-8 cannot carry them ----------

LONE = ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"']


@pytest.mark.parametrize("spelt", LONE)
@pytest.mark.parametrize("template", ['{"type":"message","text":"hi","id":%s}', '{"type":"dance","id":%s}'])
def test_a_lone_surrogate_is_refused_and_never_echoed(template: str, spelt: str) -> None:
    error = refused(template % spelt)
    assert (error.code, error.id) == ("invalid_frame", None)
    assert "surrogate" in error.message
    error.model_dump_json().encode()  # what goes on the wire encodes


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"message","text":"\\ud83d","id":"m1"}',
        '{"type":"resume","conversation_id":"c1","id":"r1","\\ud800":1}',
        '{"type":"approve","call_id":"\\udbff","approved":true}',
    ],
)
def test_a_lone_surrogate_anywhere_is_refused(data: str) -> None:
    error = refused(data)
    assert error.code == "invalid_frame"


def test_a_surrogate_pair_is_a_character() -> None:
    frame = inbound.parse('{"type":"message","text":"\\ud83d\\ude00","id":"\\ud83d\\ude00"}', LIMITS)
    assert isinstance(frame, SendMessage) and frame.text == "\U0001f600" and frame.id == "\U0001f600"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_lone_surrogate_costs_one_error_frame_not_the_socket(
    broker: Broker, gateway: tuple[Gateway, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentry_gateway")
    async with connect(gateway[1] + "?user=surrogates") as ws:
        for _ in range(20):
            await ws.send('{"type":"message","text":"hi","id":"\\ud800"}')
            error = await recv_json(ws)
            assert (error["code"], error.get("id")) == ("invalid_frame", None)
        await send_message(ws, "still here", id="m1")
        turn = await broker.log.next()
        assert (turn.text, turn.client_message_id) == ("still here", "m1")
    assert not [r for r in caplog.records if r.exc_info], "a refused frame logs no traceback"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_resume_past_the_conversations_end_is_refused_and_loses_nothing(
    broker: Broker, gateway: tuple[Gateway, str]
) -> None:
    """Regression: `after_seq` above the conversation's last seq (any value up to 2^53 was
    taken) made the socket treat every frame up to it as already sent: the conversation's
    next frames, the `message.accepted` of the client's own next message too, were dropped
    without a word. Such a resume is now `invalid_resume`, and changes nothing."""
    conversation = issued(broker, "ahead", "resume-ahead")
    for seq in (1, 2, 3):
        await broker.send_frame(conversation, seq, publish=False)
    async with connect(gateway[1] + "?user=ahead") as ws:
        for after_seq in (4, MAX_CLIENT_INT):
            await ws.send(
                json.dumps({"type": "resume", "conversation_id": conversation, "after_seq": after_seq, "id": "r"})
            )
            error = await recv_json(ws)
            assert (error["code"], error["id"], error["conversation_id"]) == ("invalid_resume", "r", conversation)
            assert f"after_seq {after_seq} is beyond the conversation's last seq" in error["message"]
        await ws.send(json.dumps({"type": "resume", "conversation_id": conversation, "after_seq": 3}))  # its end
        await broker.send_frame(conversation, 4)
        assert (await recv_json(ws))["seq"] == 4
