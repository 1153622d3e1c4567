"""RabbitMQ stops and starts while a turn runs: every service reconnects by itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.client import answer, converse, next_frame, send
from tests.faults.checks import assert_clean_stream
from tests.stack import AMQP_URL, Stack

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None or ("127.0.0.1" not in AMQP_URL and "localhost" not in AMQP_URL),
    reason="needs the local RabbitMQ node, controlled with rabbitmqctl",
)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


async def test_broker_restart_mid_turn(fault_stack: Stack) -> None:
    async with connect(fault_stack.ws_url) as ws:
        await send(ws, {"type": "message", "text": "count to 150"})
        frames: list[dict[str, Any]] = []
        while len([f for f in frames if f["type"] == "message.delta"]) < 3:
            frames.append(await next_frame(ws))
        conversation = frames[0]["conversation_id"]
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            # Sent during the outage: refused clearly, never silently dropped.
            await send(ws, {"type": "message", "text": "are you there?", "conversation_id": conversation})
            while (frame := await next_frame(ws, timeout=30))["type"] != "error":
                frames.append(frame)
            assert frame["code"] == "unavailable"
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        while frames[-1]["type"] not in ("turn.completed", "turn.failed"):
            frame = await next_frame(ws, timeout=90)
            if frame["type"] != "error":
                frames.append(frame)
        assert assert_clean_stream([f for f in frames if f["type"] != "message.accepted"]) == " ".join(
            str(i) for i in range(1, 151)
        )
        # After the outage the same socket and conversation work again.
        assert "9" in answer(await converse(ws, "what is 3*3?", conversation_id=conversation))
