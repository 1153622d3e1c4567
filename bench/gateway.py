"""Time to first token through Agentry vs straight to the model, and turns per second.

Starts a full stack of real processes (its own namespace, loopback only), then measures:
- direct: the `openai` SDK streaming from the offline model, first `content` token;
- via Agentry: a WebSocket client, `message` sent to first `message.delta` frame, and to
  `turn.completed`;
- load: C concurrent clients each running T turns (bounded), completed turns per second.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from websockets.asyncio.client import connect

from tests.client import next_frame, send
from tests.stack import Stack

RUNS = 40
CLIENTS, TURNS_EACH = 10, 5
TEXT = "hello there, how are you today?"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def direct(base_url: str) -> list[float]:
    client = AsyncOpenAI(base_url=base_url, api_key="offline", max_retries=0)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="agentry-offline", messages=[{"role": "user", "content": TEXT}], stream=True
        )
        first = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        assert first is not None
        times.append(first)
    await client.close()
    return times


async def one_turn(ws: Any, conversation: str | None) -> tuple[float, float, str]:
    message: dict[str, Any] = {"type": "message", "text": TEXT}
    if conversation:
        message["conversation_id"] = conversation
    started = time.perf_counter()
    await send(ws, message)
    first = None
    while True:
        frame = await next_frame(ws, timeout=60)
        if frame["type"] == "message.delta" and first is None:
            first = time.perf_counter() - started
        if frame["type"] in ("turn.completed", "turn.failed"):
            assert frame["type"] == "turn.completed", frame
            assert first is not None
            return first, time.perf_counter() - started, frame["conversation_id"]


async def via_agentry(ws_url: str) -> tuple[list[float], list[float]]:
    firsts, totals = [], []
    async with connect(ws_url) as ws:
        conversation = None
        for _ in range(RUNS):
            first, total, conversation = await one_turn(ws, conversation)
            firsts.append(first)
            totals.append(total)
    return firsts, totals


async def load(ws_url: str) -> float:
    async def client(i: int) -> None:
        async with connect(f"{ws_url}?user=load{i}") as ws:
            conversation = None
            for _ in range(TURNS_EACH):
                _, _, conversation = await one_turn(ws, conversation)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return CLIENTS * TURNS_EACH / (time.perf_counter() - started)


async def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), OFFLINE_MODEL_CHUNK_DELAY_MS="5")
        try:
            await asyncio.to_thread(stack.start_all)
            model_url = f"http://127.0.0.1:{stack.ports['offline-model']}/v1"
            await direct(model_url)  # warm-up
            await via_agentry(stack.ws_url)
            straight = await direct(model_url)
            firsts, totals = await via_agentry(stack.ws_url)
            rate = await load(stack.ws_url)
        finally:
            await asyncio.to_thread(stack.close)
    ratio = statistics.median(firsts) / statistics.median(straight)
    print(f"{RUNS} sequential turns, one conversation; offline model streaming every 5 ms; 2 cores\n")
    print("| path | p50 (ms) | p95 (ms) |")
    print("|---|---|---|")
    print(f"| first token, straight to the model (openai SDK) | {pct(straight, 0.5):.1f} | {pct(straight, 0.95):.1f} |")
    print(f"| first `message.delta`, client through Agentry | {pct(firsts, 0.5):.1f} | {pct(firsts, 0.95):.1f} |")
    print(f"| whole turn through Agentry (`turn.completed`) | {pct(totals, 0.5):.1f} | {pct(totals, 0.95):.1f} |")
    print(f"\ntime to first token, Agentry / straight: {ratio:.2f}x (p50)")
    print(f"load: {CLIENTS} clients x {TURNS_EACH} turns: {rate:.1f} turns/s")
