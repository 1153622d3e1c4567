"""A model that keeps failing: retries, then the fallback model, then the circuit breaker."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import Stack, free_port


async def test_fallback_model_answers_when_the_primary_is_down(tmp_path: Path) -> None:
    stack = Stack(tmp_path, LLM_MAX_RETRIES="1", LLM_TIMEOUT_SECONDS="2")
    live_model = f"http://127.0.0.1:{stack.ports['offline-model']}/v1"
    stack.env.update(
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens: the primary is down
        LLM_FALLBACK_MODEL="agentry-offline-fallback",
        LLM_FALLBACK_BASE_URL=live_model,
    )
    try:
        stack.start_all()
        async with connect(stack.ws_url) as ws:
            assert "3367" in answer(await converse(ws, "what is 37*91?"))
    finally:
        stack.close()


async def test_breaker_fails_turns_fast_while_the_model_is_down(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        LLM_MAX_RETRIES="0",
        LLM_BREAKER_FAILURES="2",
        LLM_BREAKER_COOLDOWN_SECONDS="300",
    )
    try:
        stack.start_all()
        async with connect(stack.ws_url) as ws:
            codes, messages = [], []
            for _ in range(3):
                end = (await converse(ws, "hello"))[-1]
                codes.append(end["error"]["code"])
                messages.append(end["error"]["message"])
        assert codes == ["model_unavailable"] * 3
        assert "circuit open" not in messages[0] and "circuit open" in messages[2]
    finally:
        stack.close()
