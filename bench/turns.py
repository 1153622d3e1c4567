"""What a turn costs each service, against two model calls made straight with the SDK.

Starts a full stack of real processes (its own namespace, loopback only, the offline
model streaming with no pause, or `BENCH_TURNS_CHUNK_DELAY_MS` between chunks) and measures:
- CPU per turn of each service: user + system time of the process and its reaped children
  from /proc/<pid>/stat, before and after N sequential turns through one WebSocket, for a
  turn with one calculator call and one with no tool. The idle rate (heartbeats) is
  measured first and reported apart; it is inside the per-turn numbers. Beside them, the
  local RabbitMQ node's CPU over the same turns (not in Agentry's total: the broker is
  shared, and the issue counts the services; but it runs on the same cores).
- the direct path: the same two model calls made with the `openai` SDK from this process
  (CPU from getrusage, time to the answer's first token). "The same" is the reasoner's own
  requests, rebuilt from what it reads: its system prompt, the last turn's context from
  memory (`GetContext`: the window, and what the turn produced: the calls and their
  results) and the tool catalog. For comparison, also one-message requests (the user's
  text, the calculator tool only), which leave out the history and catalog a model reads
  in every agent's turn;
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
import functools
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentry_reasoner.agent import openai_tools
from agentry_reasoner.model import TextDelta, ToolCallsRequested
from agentry_reasoner.model.openai_chat import OpenAIModel, model_client
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.memory import MEMORY_REPLY, Context, GetContext
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested
from agentry_shared.settings import ReasonerSettings
from agentry_shared.topology import Topology
from openai import AsyncOpenAI, AsyncStream
from websockets.asyncio.client import connect

from tests.client import next_frame, send
from tests.stack import AMQP_URL, Stack

DEFAULT_TENANT = "default"  # the gateway's tenant for ?user= identities (AUTH_DEV_IDENTITY)

RUNS = int(os.environ.get("BENCH_TURNS_RUNS", "100"))
LOAD_TURNS_EACH = int(os.environ.get("BENCH_TURNS_LOAD_EACH", "10"))
# The offline model's pause between chunks (ms): 0, the setting, unless asked. With a
# pause (`make run` streams every 5 ms, as a real model streams) an answer arrives over time
# and becomes several frames and log entries: what a turn costs then. Both paths get it.
CHUNK_DELAY_MS = int(os.environ.get("BENCH_TURNS_CHUNK_DELAY_MS", "0"))
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


def broker_pid() -> int | None:
    """The local RabbitMQ node's Erlang VM, if the broker runs on this machine."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() == "beam.smp" and b"rabbit" in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue  # gone, or not ours to read
    return None


BROKER = "broker"  # the RabbitMQ node: shown beside the services, not in Agentry's total


def service_cpu(stack: Stack) -> dict[str, float]:
    cpu = {p.name: cpu_seconds(p.process.pid) for p in stack.procs if p.alive()}
    if (pid := broker_pid()) is not None:
        cpu[BROKER] = cpu_seconds(pid)
    return cpu


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass(frozen=True)
class Timed:
    first: float  # seconds from sending to the first `message.delta`
    total: float  # to `turn.completed`
    conversation: str
    turn_id: str


async def one_turn(ws: Any, text: str, conversation: str | None) -> Timed:
    """Send to first `message.delta` and to `turn.completed`."""
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
            return Timed(first, time.perf_counter() - started, frame["conversation_id"], frame["turn_id"])


@dataclass(frozen=True)
class Requests:
    """The messages and tools of a turn's model calls: the first call's messages and, with
    `two_calls`, what the second adds (the assistant's calls and their results; None: built
    from the calls the first returned, with the calculator's answer)."""

    messages: list[Any]
    tools: list[Any]
    two_calls: bool
    then: list[Any] | None = None


def one_message(text: str, tool: bool) -> Requests:
    return Requests([{"role": "user", "content": text}], TOOLS if tool else [], two_calls=tool)


async def reasoners_requests(stack: Stack, user: str, conversation: str, turn_id: str) -> Requests:
    """The requests the reasoner made for `turn_id`, rebuilt from what it read."""
    topology = Topology(stack.namespace, int(stack.env["AGENTRY_PARTITIONS"]))
    bus = Bus(AMQP_URL, topology, name="bench")
    await bus.connect()
    try:
        scope = Scope(tenant_id=DEFAULT_TENANT, user_id=user, conversation_id=conversation)
        reply = MEMORY_REPLY.validate_json(
            await bus.request(topology.memory_rpc, encode(GetContext(scope=scope, turn_id=turn_id)))
        )
        catalog = TOOL_REPLY.validate_json(await bus.request(topology.tool_catalog, encode(CatalogRequested())))
    finally:
        await bus.close()
    assert isinstance(reply, Context) and isinstance(catalog, Catalog), (reply, catalog)
    system = {"role": "system", "content": ReasonerSettings().reasoner_system_prompt}
    history = [system, *(m.to_openai() for m in reply.messages)]
    calls_and_results = [m.to_openai() for m in reply.produced[:-1]]  # all but the answer
    return Requests(history, openai_tools(catalog.tools), two_calls=bool(calls_and_results), then=calls_and_results)


async def direct_turn(client: AsyncOpenAI, requests: Requests) -> float:
    """The model calls of one turn straight with the SDK, as an application calls it (the
    messages as `messages=`, chunks parsed); time to the answer's first token."""
    messages: list[Any] = list(requests.messages)
    started = time.perf_counter()
    if requests.two_calls:
        stream = await client.chat.completions.create(
            model="agentry-offline",
            messages=messages,
            tools=requests.tools,
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
        if requests.then is not None:
            messages.extend(requests.then)  # what the reasoner sent back: the same calls, their results
        else:
            asked = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls.values()
            ]
            messages.append({"role": "assistant", "tool_calls": asked})
            messages.extend({"role": "tool", "tool_call_id": c["id"], "content": "3367"} for c in calls.values())
    stream = await client.chat.completions.create(
        model="agentry-offline",
        messages=messages,
        tools=requests.tools,
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


async def reasoners_calls(model: OpenAIModel, requests: Requests) -> float:
    """The same calls through the reasoner's own model client (the SDK as the reasoner
    drives it: the conversation in `extra_body`, chunks read as plain JSON) and nothing
    else of Agentry; time to the answer's first token."""
    messages = list(requests.messages)
    started = time.perf_counter()
    if requests.two_calls:
        items = [item async for item in model.stream(messages, requests.tools)]
        assert any(isinstance(i, ToolCallsRequested) for i in items), "the model should have called the calculator"
        messages.extend(requests.then or [])
    first = None
    async for item in model.stream(messages, requests.tools):
        if first is None and isinstance(item, TextDelta) and item.text:
            first = time.perf_counter() - started
    assert first is not None
    return first


async def direct(base_url: str, requests: Requests) -> tuple[list[float], float]:
    """The reasoner's requests through the reasoner's model client (`then` known), or the
    one-message requests through the SDK as an application would call it."""
    if requests.then is not None:
        client = model_client(base_url, "offline", timeout=60, max_retries=0)
        turn = functools.partial(reasoners_calls, OpenAIModel(client, "agentry-offline"), requests)
    else:
        client = AsyncOpenAI(base_url=base_url, api_key="offline", max_retries=0)
        turn = functools.partial(direct_turn, client, requests)
    async with client:
        for _ in range(5):
            await turn()
        before = own_cpu()
        firsts = [await turn() for _ in range(RUNS)]
        return firsts, (own_cpu() - before) / RUNS * 1000


SEQUENTIAL_USER = "bench-seq"


async def sequential(stack: Stack, text: str) -> tuple[dict[str, float], list[Timed]]:
    """CPU per turn of each service, and each turn's times."""
    async with connect(f"{stack.ws_url}?user={SEQUENTIAL_USER}") as ws:
        conversation = None
        for _ in range(5):
            conversation = (await one_turn(ws, text, conversation)).conversation
        await asyncio.sleep(0.5)
        before = service_cpu(stack)
        turns = []
        for _ in range(RUNS):
            turns.append(await one_turn(ws, text, conversation))
            conversation = turns[-1].conversation
        after = service_cpu(stack)
    return {name: (after[name] - before[name]) / RUNS * 1000 for name in before}, turns


async def load(stack: Stack, clients: int, text: str) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def client(i: int) -> None:
        async with connect(f"{stack.ws_url}?user=load{clients}-{i}") as ws:
            conversation = (await one_turn(ws, text, None)).conversation  # warm-up, not counted
            await barrier.wait()
            for _ in range(LOAD_TURNS_EACH):
                timed = await one_turn(ws, text, conversation)
                latencies.append(timed.total)

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
    print(
        "| turn | " + " | ".join(SERVICES) + " | Agentry total | direct, same requests (client) | "
        "RabbitMQ node (not in the total) |"
    )
    print("|---|" + "---|" * (len(SERVICES) + 3))
    for label, cpu in rows.items():
        cells = " | ".join(f"{cpu.get(name, 0.0):.1f}" for name in SERVICES)
        total = sum(v for name, v in cpu.items() if name != BROKER)
        broker = f"{cpu[BROKER]:.1f}" if BROKER in cpu else "not on this machine"
        print(f"| {label} | {cells} | **{total:.1f}** | {direct_cpu[label]:.1f} | {broker} |")
    print(
        "\nidle CPU (ms per second, heartbeats and timers; inside the numbers above): "
        + ", ".join(f"{name} {idle.get(name, 0.0):.1f}" for name in [*SERVICES, BROKER] if name in idle)
    )
    print(
        "The RabbitMQ node's CPU is the whole node's (every queue a turn crosses, and whatever else uses\n"
        "the broker meanwhile): it shares the machine's cores with the services, and a first token waits\n"
        "for whatever of it runs on the way."
    )


async def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            AGENTRY_PARTITIONS="64",
            OFFLINE_MODEL_CHUNK_DELAY_MS=str(CHUNK_DELAY_MS),
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
                rows[label], turns = await sequential(stack, text)
                last = turns[-1]
                same = await reasoners_requests(stack, SEQUENTIAL_USER, last.conversation, last.turn_id)
                assert same.two_calls == tool, same  # the calculator turn made two calls, the other one
                straight, direct_cpu[label] = await direct(model_url, same)
                minimal, _ = await direct(model_url, one_message(text, tool))
                ttft[label] = ([t.first for t in turns], straight, minimal, [t.total for t in turns])
            throughput = {c: await load(stack, c, PLAIN_TEXT) for c in CONCURRENCY}
            loadavg = os.getloadavg()[0]
        finally:
            await asyncio.to_thread(stack.close)
    pause = "no pause" if not CHUNK_DELAY_MS else f"a {CHUNK_DELAY_MS} ms pause between chunks"
    print(f"{RUNS} sequential turns through one WebSocket per kind; offline model with {pause}; 64 partitions;")
    print(f"{os.cpu_count()} CPUs; load average (1 min) {loadavg:.1f} at the end. CPU: ms per turn, user + system,")
    print(
        "children included, from /proc. REASONER_TOOL_CALLS_PER_MINUTE=0 (the per-user tool limit is off),\n"
        "GATEWAY_MAX_FRAMES_PER_SECOND=1000 (one client sends faster than the default 20/s).\n"
    )
    cpu_table(rows, direct_cpu, idle)
    print(
        "\nfirst token, ms: the direct SDK path with the reasoner's own requests (its system prompt, the\n"
        "turn's context from memory, the catalog) and with one-message requests (user text, calculator only)\n"
    )
    print(
        "| turn | direct, same requests p50 | direct, one message p50 | Agentry first delta p50 | "
        "difference p50 (same requests) | (one message) | Agentry p95 | whole turn p50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, (firsts, straight, minimal, totals) in ttft.items():
        diff = pct(firsts, 0.5) - pct(straight, 0.5)
        print(
            f"| {label} | {pct(straight, 0.5):.1f} | {pct(minimal, 0.5):.1f} | {pct(firsts, 0.5):.1f} | "
            f"**{diff:.1f}** | {pct(firsts, 0.5) - pct(minimal, 0.5):.1f} | {pct(firsts, 0.95):.1f} | "
            f"{pct(totals, 0.5):.1f} |"
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
