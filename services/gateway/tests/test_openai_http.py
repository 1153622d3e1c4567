"""The OpenAI-compatible endpoint of an in-process gateway on the real broker, through the
official `openai` SDK, where a test needs memory (the stand-in) to act at a given moment."""

from __future__ import annotations

import asyncio

import openai
import pytest
from agentry_shared.contracts.memory import AdmitTurn, MemoryRequest
from agentry_shared.testing import until

from services.gateway.tests.conftest import Broker, StartGateway, issued


def client(ws_url: str, user: str) -> openai.AsyncOpenAI:
    base = ws_url.removesuffix("/ws").replace("ws://", "http://") + "/v1"
    return openai.AsyncOpenAI(base_url=base, api_key="unused", default_headers={"x-agentry-user": user}, max_retries=0)


async def test_a_request_gone_before_its_turn_is_published_stops_following_the_conversation(
    broker: Broker, start_own_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that leaves while the gateway still waits on memory (the turn budget's
    admission, an overloaded memory) leaves nothing behind. The gateway went on following
    the conversation for good: its frames kept coming to a queue no one read."""
    gateway, url = await start_own_gateway(memory_timeout=30.0, budget_user_turns_per_minute=100)
    conversation = issued(broker, "oa-leaver", "c0a1e2f3a4b5c6d7e8f9a0b1c2d3e4f5")

    def key(request: MemoryRequest) -> str | None:  # every admission is answered late
        return "admit" if isinstance(request, AdmitTurn) else None

    monkeypatch.setattr(broker.memory, "_key", key)
    monkeypatch.setattr(broker.memory, "late", {"admit"})
    asking = asyncio.create_task(
        client(url, "oa-leaver").chat.completions.create(
            model="agentry",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-agentry-conversation-id": conversation},
        )
    )
    await until(  # this request's: the stand-in is shared with the other tests
        lambda: any(
            isinstance(r, AdmitTurn) and r.scope.conversation_id == conversation for r in broker.memory.requests
        ),
        "the admission asked",
    )
    assert conversation in gateway.fanout.bound  # followed from before the turn is published
    asking.cancel()  # the client goes away
    with pytest.raises(asyncio.CancelledError):
        await asking
    await until(lambda: conversation not in gateway.fanout.bound, "the conversation no longer followed")
