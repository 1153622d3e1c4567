"""What a turn costs each service, against two model calls made straight with the SDK.

Starts a full stack of real processes (its own namespace, loopback only, the offline
model streaming with no pause) and measures:
- CPU per turn of each service: user + system time of the process and its reaped children
  from /proc/<pid>/stat, before and after N sequential turns through one WebSocket, for a
  turn with one calculator call and one with no tool. The idle rate (heartbeats) is
  measured first and reported apart; it is inside the per-turn numbers.
- the direct path: the same model calls made with the `openai` SDK from this process (CPU
  from getrusage, time to the answer's first token);
- time to first answer token at one client, Agentry minus the direct path (p50, p95);
- throughput: C concurrent clients (C = 1, 8, 32), each its own user and conversation,
  turns/s and send-to-`turn.completed` p50 / p99.

The per-user tool-call rate limit is off (`REASONER_TOOL_CALLS_PER_MINUTE=0`): 100 calculator
turns a minute from one user would otherwise be refused, which is not what we measure. The
socket's frame rate limit is raised (`GATEWAY_MAX_FRAMES_PER_SECOND=1000`): one client sends
its next turn as soon as the last ends, faster than the default 20 frames/s once a turn
takes under 50 ms.
CPU per turn is robust to other work on the machine; wall-clock numbers are not.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI, AsyncStream
from websockets.asyncio.client import connect

from tests.client import next_frame, send
from tests.stack import Stack

RUNS = int(os.environ.get("BENCH_TURNS_RUNS", "100"))
LOAD_TURNS_EACH = int(os.environ.get("BENCH_TURNS_LOAD_EACH", "10"))
CONCURRENCY = (1, 8, 32)
TOOL_TEXT = "what is 37*91?"
PLAIN_TEXT = "hello there"
SERVICES = ["gateway", "memory", "reasoner", "tool-runner", "offline-model"]
TICK = os.sysconf("SC_CLK_TCK")
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluates an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}

TOOLS: list[Any] = [CALCULATOR]  # the SDK's TypedDicts, as plain JSON


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process (children reaped so far included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def service_cpu(stack: Stack) -> dict[str, float]:
    return {p.name: cpu_seconds(p.process.pid) for p in stack.procs if p.alive()}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def one_turn(ws: Any, text: str, conversation: str | None) -> tuple[float, float, str]:
    """Send to first `message.delta` and to `turn.completed`, and the conversation id."""
    message: dict[str, Any] = {"type": "message", "text": text}
    if conversation:
        message["conversation_id"] = conversation
    started = time.perf_counter()
    await send(ws, message)
    first = None
    while True:
        frame = await next_frame(ws, timeout=60)
        if frame["type"] == "error":
            raise RuntimeError(f"the turn got an error frame: {frame}")
        if frame["type"] == "message.delta" and first is None:
            first = time.perf_counter() - started
        if frame["type"] in ("turn.completed", "turn.failed"):
            assert frame["type"] == "turn.completed", frame
            assert first is not None
            return first, time.perf_counter() - started, frame["conversation_id"]


async def direct_turn(client: AsyncOpenAI, text: str, tool: bool) -> float:
    """The model calls of one turn straight with the SDK; time to the answer's first token."""
    messages: list[Any] = [{"role": "user", "content": text}]
    started = time.perf_counter()
    if tool:
        stream = await client.chat.completions.create(
            model="agentry-offline",
            messages=messages,
            tools=TOOLS,
            stream=True,
        )
        assert isinstance(stream, AsyncStream)
        calls: dict[int, dict[str, str]] = {}
        async for chunk in stream:
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
        assert calls, "the offline model should have called the calculator"
        messages.append(
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls.values()
                ],
            }
        )
        messages.extend({"role": "tool", "tool_call_id": c["id"], "content": "3367"} for c in calls.values())
    stream = await client.chat.completions.create(
        model="agentry-offline",
        messages=messages,
        tools=TOOLS if tool else [],
        stream=True,
    )
    assert isinstance(stream, AsyncStream)
    first = None
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    assert first is not None
    return first


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def direct(base_url: str, text: str, tool: bool) -> tuple[list[float], float]:
    client = AsyncOpenAI(base_url=base_url, api_key="offline", max_retries=0)
    for _ in range(5):
        await direct_turn(client, text, tool)
    before = own_cpu()
    firsts = [await direct_turn(client, text, tool) for _ in range(RUNS)]
    cpu = (own_cpu() - before) / RUNS * 1000
    await client.close()
    return firsts, cpu


async def sequential(stack: Stack, text: str) -> tuple[dict[str, float], list[float], list[float]]:
    """CPU per turn of each service, first-delta times and whole-turn times."""
    async with connect(f"{stack.ws_url}?user=bench-seq") as ws:
        conversation = None
        for _ in range(5):
            _, _, conversation = await one_turn(ws, text, conversation)
        await asyncio.sleep(0.5)
        before = service_cpu(stack)
        firsts, totals = [], []
        for _ in range(RUNS):
            first, total, conversation = await one_turn(ws, text, conversation)
            firsts.append(first)
            totals.append(total)
        after = service_cpu(stack)
    return {name: (after[name] - before[name]) / RUNS * 1000 for name in before}, firsts, totals


async def load(stack: Stack, clients: int, text: str) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def client(i: int) -> None:
        async with connect(f"{stack.ws_url}?user=load{clients}-{i}") as ws:
            _, _, conversation = await one_turn(ws, text, None)  # warm-up, not counted
            await barrier.wait()
            for _ in range(LOAD_TURNS_EACH):
                _, total, conversation = await one_turn(ws, text, conversation)
                latencies.append(total)

    barrier = asyncio.Barrier(clients + 1)
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await barrier.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    return clients * LOAD_TURNS_EACH / (time.perf_counter() - started), latencies


async def idle_cpu(stack: Stack, seconds: float = 3.0) -> dict[str, float]:
    before = service_cpu(stack)
    await asyncio.sleep(seconds)
    after = service_cpu(stack)
    return {name: (after[name] - before[name]) / seconds * 1000 for name in before}


def cpu_table(rows: dict[str, dict[str, float]], direct_cpu: dict[str, float], idle: dict[str, float]) -> None:
    print("| turn | " + " | ".join(SERVICES) + " | Agentry total | direct SDK (client) |")
    print("|---|" + "---|" * (len(SERVICES) + 2))
    for label, cpu in rows.items():
        cells = " | ".join(f"{cpu.get(name, 0.0):.1f}" for name in SERVICES)
        print(f"| {label} | {cells} | **{sum(cpu.values()):.1f}** | {direct_cpu[label]:.1f} |")
    print(
        "\nidle CPU (ms per second, heartbeats and timers; inside the numbers above): "
        + ", ".join(f"{name} {idle.get(name, 0.0):.1f}" for name in SERVICES)
    )


async def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            AGENTRY_PARTITIONS="64",
            OFFLINE_MODEL_CHUNK_DELAY_MS="0",
            REASONER_TOOL_CALLS_PER_MINUTE="0",
            GATEWAY_MAX_FRAMES_PER_SECOND="1000",
            LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
        )
        try:
            await asyncio.to_thread(stack.start_all)
            model_url = f"http://127.0.0.1:{stack.ports['offline-model']}/v1"
            idle = await idle_cpu(stack)
            rows, direct_cpu, ttft = {}, {}, {}
            for label, text, tool in (("one calculator call", TOOL_TEXT, True), ("no tool", PLAIN_TEXT, False)):
                rows[label], firsts, totals = await sequential(stack, text)
                straight, direct_cpu[label] = await direct(model_url, text, tool)
                ttft[label] = (firsts, straight, totals)
            throughput = {c: await load(stack, c, PLAIN_TEXT) for c in CONCURRENCY}
            loadavg = os.getloadavg()[0]
        finally:
            await asyncio.to_thread(stack.close)
    print(f"{RUNS} sequential turns through one WebSocket per kind; offline model with no pause; 64 partitions;")
    print(f"{os.cpu_count()} CPUs; load average (1 min) {loadavg:.1f} at the end. CPU: ms per turn, user + system,")
    print(
        "children included, from /proc. REASONER_TOOL_CALLS_PER_MINUTE=0 (the per-user tool limit is off),\n"
        "GATEWAY_MAX_FRAMES_PER_SECOND=1000 (one client sends faster than the default 20/s).\n"
    )
    cpu_table(rows, direct_cpu, idle)
    print(
        "\n| turn | direct SDK first token p50 | Agentry first delta p50 | difference p50 | Agentry p95 | "
        "whole turn p50 |"
    )
    print("|---|---|---|---|---|---|")
    for label, (firsts, straight, totals) in ttft.items():
        diff = pct(firsts, 0.5) - pct(straight, 0.5)
        print(
            f"| {label} | {pct(straight, 0.5):.1f} | {pct(firsts, 0.5):.1f} | **{diff:.1f}** | "
            f"{pct(firsts, 0.95):.1f} | {pct(totals, 0.5):.1f} |"
        )
    print(
        f"\nthroughput: 'hello there' turns, each client {LOAD_TURNS_EACH} turns in its own conversation "
        "after one warm-up turn\n"
    )
    print("| clients | turns/s | p50 (ms) | p99 (ms) | p99 / p50 |")
    print("|---|---|---|---|---|")
    for clients, (rate, latencies) in throughput.items():
        p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
        print(f"| {clients} | {rate:.1f} | {p50:.0f} | {p99:.0f} | {p99 / p50:.1f} |")
