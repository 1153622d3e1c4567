"""What one message costs the service that handles it: memory per log entry, a gateway
per fan-out message, the tool-runner per pure tool call. A diagnostic beside "turns"
(not in `make bench`).

Each service runs alone (a namespace of its own, deleted afterwards) and is fed over the
real broker one message at a time, the way a streamed answer reaches memory and a
calculator call reaches a tool-runner: memory gets a turn, then `events.posted` entries
of one `message.delta` each (each waited for until its fan-out arrives); a gateway,
with a memory stand-in answering its RPC, gets fan-out messages of one frame each for a
conversation one WebSocket client follows (each waited for until the client reads it);
the tool-runner gets calculator calls (each waited for until its reply). CPU per message from
/proc/<pid>/stat over `ENTRIES_RUNS` messages after 30 warm-up ones; wall time is the
round trip seen here. With `ENTRIES_PROFILE=<folder>`, py-spy (if installed) records each
service meanwhile (raw format, 1 kHz) into that folder.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.events import EventsPosted, PostedEvent
from agentry_shared.contracts.frames import MessageDelta
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, ToolCompleted, ToolRequested
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.testing import MemoryStandIn
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractIncomingMessage
from websockets.asyncio.client import connect

from tests.stack import AMQP_URL, Proc, Stack

RUNS = int(os.environ.get("ENTRIES_RUNS", "400"))
WARM_UP = 30
PARTITIONS = 4
DELTA = "Hello! I am the offline model. Ask me to"


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def start_profile(proc: Proc) -> subprocess.Popen[bytes] | None:
    """py-spy on `proc` when ENTRIES_PROFILE names a folder and py-spy is installed."""
    profile = os.environ.get("ENTRIES_PROFILE")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not profile or not Path(spy).exists():
        return None
    Path(profile).mkdir(parents=True, exist_ok=True)
    out = Path(profile) / f"{proc.name}.txt"
    argv = [spy, "record", "-p", str(proc.process.pid), "--nonblocking", "-r", "1000", "--format", "raw"]
    return subprocess.Popen([*argv, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(proc: Proc, one: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(CPU ms, wall ms) per message of `proc` over RUNS messages, after the warm-up."""
    for i in range(WARM_UP):
        await one(i)
    spy = start_profile(proc)
    before, started = cpu_ms(proc.process.pid), time.perf_counter()
    for i in range(WARM_UP, WARM_UP + RUNS):
        await one(i)
    wall = (time.perf_counter() - started) * 1000 / RUNS
    cpu = (cpu_ms(proc.process.pid) - before) / RUNS
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait)
    return cpu, wall


async def memory_entries(stack: Stack, bus: Bus) -> tuple[float, float]:
    proc = stack.start("memory")
    await asyncio.to_thread(stack.wait_ready, proc)
    topology = bus.topology
    scope = Scope(tenant_id="bench", user_id="bench", conversation_id=uuid.uuid4().hex)
    fanned: asyncio.Queue[bytes] = asyncio.Queue()

    async def fanout(message: AbstractIncomingMessage) -> None:
        fanned.put_nowait(message.body)

    channel = await bus.channel(100)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.frames_exchange, scope.conversation_id)
    await queue.consume(fanout, no_ack=True)
    partition = str(topology.partition(scope.conversation_id))
    accepted_at = datetime.datetime.now(datetime.UTC)
    turn = TurnRequested(scope=scope, turn_id="turn-1", text="hello there", accepted_at=accepted_at)
    await bus.publish(topology.log_exchange, partition, encode(turn))
    await fanned.get()

    async def one(i: int) -> None:
        frame = MessageDelta(conversation_id=scope.conversation_id, turn_id="turn-1", text=DELTA)
        entry = EventsPosted(scope=scope, turn_id="turn-1", events=[PostedEvent(event_id=f"e{i}", frame=frame)])
        await bus.publish(topology.log_exchange, partition, encode(entry))
        await fanned.get()

    try:
        return await measure(proc, one)
    finally:
        await channel.close()


async def gateway_entries(stack: Stack, bus: Bus) -> tuple[float, float]:
    """A conversation's fan-out messages (one `message.delta` each, as memory publishes
    them) through a gateway to one WebSocket client; a memory stand-in answers its RPC."""
    memory = MemoryStandIn(bus)
    await memory.start()
    proc = stack.start("gateway")
    await asyncio.to_thread(stack.wait_ready, proc)
    topology = bus.topology
    turns: asyncio.Queue[bytes] = asyncio.Queue()

    async def logged(message: AbstractIncomingMessage) -> None:
        turns.put_nowait(message.body)

    channel = await bus.channel(100)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for p in range(PARTITIONS):
        await queue.bind(topology.log_exchange, str(p))
    await queue.consume(logged, no_ack=True)
    async with connect(f"{stack.ws_url}?user=bench") as ws:
        await ws.send(json.dumps({"type": "message", "text": "hello there"}))
        turn = TurnRequested.model_validate_json(await asyncio.wait_for(turns.get(), 30))
        conversation = turn.scope.conversation_id

        async def one(i: int) -> None:
            frame = {"type": "message.delta", "conversation_id": conversation, "seq": i + 1, "text": DELTA}
            await bus.publish(topology.frames_exchange, conversation, json.dumps(frame).encode(), persistent=False)
            while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("seq") != i + 1:
                pass  # only the frames we publish carry a seq; the gateway may say other things

        try:
            return await measure(proc, one)
        finally:
            await channel.close()
            await memory.stop()


async def tool_calls(stack: Stack, bus: Bus) -> tuple[float, float]:
    proc = stack.start("tool-runner")
    await asyncio.to_thread(stack.wait_ready, proc)
    scope = Scope(tenant_id="bench", user_id="bench", conversation_id=uuid.uuid4().hex)

    async def one(i: int) -> None:
        request = ToolRequested(
            scope=scope,
            turn_id="turn-1",
            call_id=f"c{i}",
            tool="calculator",
            arguments={"expression": "37*91"},
            deadline=time.time() + 30,
        )
        body = await bus.request(bus.topology.tool_pool("default"), encode(request), timeout=30)
        reply = TOOL_REPLY.validate_json(body)
        assert isinstance(reply, ToolCompleted) and reply.ok, reply

    return await measure(proc, one)


async def run() -> None:
    rows = {}
    for label, feed in (
        ("memory: one log entry (one message.delta)", memory_entries),
        ("gateway: one fan-out message to one socket (one message.delta)", gateway_entries),
        ("tool-runner: one calculator call", tool_calls),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(Path(tmp), AGENTRY_PARTITIONS=str(PARTITIONS))
            bus = Bus(AMQP_URL, Topology(namespace=stack.namespace, partitions=PARTITIONS), "bench-entries")
            await bus.connect()
            try:
                rows[label] = await feed(stack, bus)
            finally:
                await bus.close()
                await asyncio.to_thread(stack.close)
    print(f"{RUNS} messages, one at a time, after {WARM_UP} warm-up ones; each service alone on the real broker\n")
    print("| message | CPU of the service per message (ms) | round trip seen by the sender (ms) |")
    print("|---|---|---|")
    for label, (cpu, wall) in rows.items():
        print(f"| {label} | {cpu:.2f} | {wall:.2f} |")
