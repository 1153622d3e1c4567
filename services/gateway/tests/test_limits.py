"""Per-socket and per-user limits: a client that hits one is told which, and when to
retry if retrying helps; the socket stays usable."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.tests.conftest import Broker, StartGateway, send_message

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def drain(ws: ClientConnection, quiet: float = 0.5) -> list[dict[str, object]]:
    """Every frame the gateway sends until it has been quiet for `quiet` seconds."""
    frames = []
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
