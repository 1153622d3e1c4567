"""Turn budgets end to end, on a stack of their own with tiny budgets: a message over one
is refused at the gateway (an `error`, never a silent drop) with `retry_after_ms`; a turn
that runs out of tokens finishes, and the next one is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.client import answer, converse, next_frame, send
from tests.stack import Stack

pytestmark = pytest.mark.e2e

TURNS_PER_MINUTE = 2
TOKENS_PER_DAY = 1  # any turn uses it up: the next is refused


def budget_stack(workdir: Path, **budgets: int) -> Iterator[Stack]:
    env: dict[str, str] = {name: str(value) for name, value in budgets.items()}
    s = Stack(workdir, per_service=None, **env)
    try:
        s.start_all()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def minute_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from budget_stack(tmp_path_factory.mktemp("budgets"), BUDGET_USER_TURNS_PER_MINUTE=TURNS_PER_MINUTE)


@pytest.fixture(scope="module")
def tokens_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Set for every service, so for the gateway (admits) and the reasoner (reports tokens).
    yield from budget_stack(tmp_path_factory.mktemp("tokens"), BUDGET_TENANT_TOKENS_PER_DAY=TOKENS_PER_DAY)


async def refused(ws: ClientConnection, text: str, conversation_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "text": text, "id": "over"}
    if conversation_id:
        message["conversation_id"] = conversation_id
    await send(ws, message)
    frame = await next_frame(ws)
    assert frame["type"] == "error" and frame["id"] == "over", frame
    return frame


async def test_the_third_turn_in_a_minute_is_refused(minute_stack: Stack) -> None:
    if (left := 60 - time.time() % 60) < 20:
        await asyncio.sleep(left)  # all three in one fixed window
    async with connect(f"{minute_stack.ws_url}?user=minute") as ws:
        first = await converse(ws, "what is 2*3?")
        conversation = first[0]["conversation_id"]
        assert "6" in answer(first)
        assert "6" in answer(await converse(ws, "what is 2*3?", conversation))
        error = await refused(ws, "what is 2*3?", conversation)
    assert error["code"] == "rate_limited" and "BUDGET_USER_TURNS_PER_MINUTE" in error["message"]
    assert 0 < error["retry_after_ms"] <= 60_000
    assert error["conversation_id"] == conversation


async def test_a_refused_first_message_starts_no_conversation(minute_stack: Stack) -> None:
    """Regression: a message without `conversation_id` over a budget was refused after its
    conversation was created: each retry left an empty "(untitled)" conversation in the
    user's list (toward MEMORY_MAX_CONVERSATIONS_PER_USER). Memory now deletes it again."""
    if (left := 60 - time.time() % 60) < 20:
        await asyncio.sleep(left)  # all in one fixed window
    async with connect(f"{minute_stack.ws_url}?user=minute-new") as ws:
        first = await converse(ws, "what is 2*3?")
        conversation = first[0]["conversation_id"]
        await converse(ws, "what is 2*3?", conversation)
        for _ in range(2):
            error = await refused(ws, "what is 2*3?")
            assert error["code"] == "rate_limited" and "conversation_id" not in error, error
        await send(ws, {"type": "list_conversations", "id": "l"})
        listed = await next_frame(ws)
    assert [c["conversation_id"] for c in listed["conversations"]] == [conversation], listed


async def test_a_turn_that_uses_up_the_tokens_finishes_and_the_next_is_refused(tokens_stack: Stack) -> None:
    async with connect(f"{tokens_stack.ws_url}?user=spender") as ws:
        first = await converse(ws, "what is 37*91?")
        assert "3367" in answer(first)  # over the budget mid-turn: it still ends with its answer
        conversation = first[0]["conversation_id"]
        error = await refused(ws, "what is 2*3?", conversation)
        assert error["code"] == "budget_exceeded" and "BUDGET_TENANT_TOKENS_PER_DAY" in error["message"]
        assert 0 < error["retry_after_ms"] <= 86_400_000
        assert error["conversation_id"] == conversation
    async with connect(f"{tokens_stack.ws_url}?user=colleague") as ws:  # the tenant's budget: everyone's
        assert (await refused(ws, "hello"))["code"] == "budget_exceeded"


async def test_an_http_request_over_a_turn_budget_gets_429_with_retry_after(minute_stack: Stack) -> None:
    """The OpenAI-compatible endpoint refuses like the socket: which budget, and when to retry."""
    if (left := 60 - time.time() % 60) < 20:
        await asyncio.sleep(left)  # all three in one fixed window
    url, body = (
        minute_stack.http("gateway", "/v1/chat/completions"),
        {
            "model": "agentry",
            "messages": [{"role": "user", "content": "what is 2*3?"}],
        },
    )
    async with aiohttp.ClientSession(headers={"x-agentry-user": "minute-http"}) as http:
        for _ in range(TURNS_PER_MINUTE):
            async with http.post(url, json=body) as response:
                assert response.status == 200, await response.text()
        async with http.post(url, json=body) as response:
            error, retry_after = (await response.json())["error"], response.headers.get("Retry-After")
            assert response.status == 429, error
    assert error["code"] == "rate_limited" and "BUDGET_USER_TURNS_PER_MINUTE" in error["message"]
    assert retry_after is not None and 0 < int(retry_after) <= 60
    # The refused request, which named no conversation, left none behind (it did: an
    # empty one toward MEMORY_MAX_CONVERSATIONS_PER_USER per refused retry).
    async with connect(f"{minute_stack.ws_url}?user=minute-http") as ws:
        await send(ws, {"type": "list_conversations", "id": "l"})
        listed = await next_frame(ws)
    assert len(listed["conversations"]) == TURNS_PER_MINUTE, listed
