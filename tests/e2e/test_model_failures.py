"""The model is down or too slow: the turn fails within a bounded time, the gateway serves on."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.client import converse
from tests.stack import Stack, free_port

pytestmark = pytest.mark.e2e


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return int(reply.status)


@pytest.fixture(scope="module")
def stack_without_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    dead_port = free_port()  # nothing listens here
    s = Stack(
        Path(tmp_path_factory.mktemp("nomodel")),
        OPENAI_BASE_URL=f"http://127.0.0.1:{dead_port}/v1",
        LLM_MAX_RETRIES="1",
        LLM_TIMEOUT_SECONDS="2",
    )
    try:
        for name in ("memory", "tool-runner", "reasoner", "gateway"):
            s.wait_ready(s.start(name))
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def stack_with_slow_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("slowmodel")), LLM_MAX_RETRIES="0", LLM_TIMEOUT_SECONDS="1.5")
    try:
        s.start_all()
        yield s
    finally:
        s.close()


async def test_unreachable_model_fails_the_turn_and_the_gateway_keeps_serving(stack_without_model: Stack) -> None:
    async with connect(stack_without_model.ws_url) as ws:
        started = time.monotonic()
        frames = await converse(ws, "what is 37*91?")
        assert time.monotonic() - started < 30  # bounded, never a hang
        end = frames[-1]
        assert end["type"] == "turn.failed"
        assert end["error"]["code"] == "model_unavailable"
        assert end["error"]["message"]
        # Same socket, next message: still accepted, still answered (with a failure).
        again = await converse(ws, "hello", conversation_id=frames[0]["conversation_id"])
        assert again[0]["type"] == "message.accepted" and again[-1]["type"] == "turn.failed"
    status = await asyncio.to_thread(http_status, stack_without_model.http("gateway", "/healthz"))
    assert status == 200


async def test_model_too_slow_fails_the_turn_within_its_timeout(stack_with_slow_model: Stack) -> None:
    async with connect(stack_with_slow_model.ws_url) as ws:
        started = time.monotonic()
        frames = await converse(ws, "answer slowly [[model-slow:30]]")
        assert time.monotonic() - started < 10  # LLM_TIMEOUT_SECONDS is 1.5, the model would take 30
        assert frames[-1]["type"] == "turn.failed"
        assert frames[-1]["error"]["code"] == "model_unavailable"
        # A normal message afterwards is answered.
        ok = await converse(ws, "what is 6*7?", conversation_id=frames[0]["conversation_id"])
        assert "42" in ok[-1]["text"]
