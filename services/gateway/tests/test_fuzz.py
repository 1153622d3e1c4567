"""Fuzzing the client side: whatever a client sends, the gateway answers with a client
frame it understood or a well-formed `error` frame, keeps the socket open and stays up.

The pure parser takes 10,000 generated messages (no socket: fast); a few hundred go
through a real socket to a real gateway (the memory service is `MemoryStandIn`)."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from agentry_gateway import inbound
from agentry_shared.contracts.errors import ClientErrorCode
from agentry_shared.contracts.frames import (
    SERVER_FRAME,
    Approve,
    CancelTurn,
    ErrorFrame,
    Reauth,
    Resume,
    SendMessage,
)
from hypothesis import HealthCheck, given, settings
from websockets.asyncio.client import connect

from services.gateway.tests.conftest import StartGateway, recv_json
from services.gateway.tests.frame_fuzz import client_data, sample

CODES = frozenset(get_args(ClientErrorCode))
LIMITS = inbound.Limits(max_frame_bytes=4096, max_text_chars=1000)
CLIENT_FRAMES = (SendMessage, CancelTurn, Resume, Approve, Reauth)


def check_error(frame: ErrorFrame) -> None:
    assert frame.code in CODES
    assert frame.message
    assert frame.id is None or len(frame.id) <= 128
    assert frame.retry_after_ms is None or frame.retry_after_ms > 0
    # It goes out as JSON a client can read back.
    assert ErrorFrame.model_validate_json(frame.model_dump_json()) == frame


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(client_data())
def test_the_parser_answers_every_message(data: str | bytes) -> None:
    parsed = inbound.parse(data, LIMITS)
    if isinstance(parsed, ErrorFrame):
        check_error(parsed)
        return
    assert isinstance(parsed, CLIENT_FRAMES)
    # What was accepted is what the contract allows: it validates again from its own JSON.
    again = inbound.parse(parsed.model_dump_json(exclude_none=True), LIMITS)
    assert again == parsed
    if isinstance(parsed, SendMessage):
        assert parsed.text.strip() and len(parsed.text) <= LIMITS.max_text_chars


@pytest.mark.asyncio(loop_scope="session")
async def test_a_real_gateway_answers_every_message_and_stays_open(start_gateway: StartGateway) -> None:
    gateway, url = await start_gateway(gateway_max_frames_per_second=10_000.0, gateway_max_followed_conversations=1000)
    async with connect(url + "?user=fuzzer", max_size=None) as ws:
        for n, data in enumerate(sample(300)):
            await ws.send(data)
            # A probe after each: every frame before its answer must be well formed.
            await ws.send(json.dumps({"type": "probe", "id": f"probe-{n}"}))
            while True:
                frame = await recv_json(ws)
                if frame["type"] != "error":
                    SERVER_FRAME.validate_python(frame)  # a conversation's frame, well formed
                    continue
                parsed = ErrorFrame.model_validate(frame, strict=True)
                check_error(parsed)
                if parsed.id == f"probe-{n}":
                    assert parsed.code == "unknown_type"
                    break
    async with connect(url + "?user=after") as ws:  # the gateway is still up and serving
        await ws.send("{")
        assert (await recv_json(ws))["code"] == "invalid_json"
    assert gateway.bus.connection is not None and not gateway.bus.connection.is_closed
