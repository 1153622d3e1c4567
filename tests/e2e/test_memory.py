"""Memory across conversations: a fact told once is recalled later, for that user only."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def test_a_fact_is_recalled_in_a_new_conversation_of_the_same_user_only(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=tea-drinker") as ws:
        told = await converse(ws, "Remember that I prefer green tea.")
        assert [f["tool"] for f in told if f["type"] == "tool.started"] == ["remember"]
        assert "green tea" in answer(told)
    async with connect(stack.ws_url + "?user=tea-drinker") as ws:
        later = await converse(ws, "what do you remember about tea?")  # a new conversation
        assert later[0]["conversation_id"] != told[0]["conversation_id"]
        assert "I prefer green tea" in answer(later)
    async with connect(stack.ws_url + "?user=someone-else") as ws:
        other = await converse(ws, "what do you remember about tea?")
        assert "green tea" not in answer(other)
