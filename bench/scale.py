"""Scale-out: turns per second and each replica's share with 1, 2 and 3 reasoners.

One stack of real processes (its own namespace, loopback only, 64 partitions), the offline
model pausing CHUNK_DELAY_MS between streamed chunks so that a turn waits on the model as
it would in production: a "hello there" turn is one model request streaming 22 chunks
(21 pauses: 294 ms; 305 ms measured on an idle stack, against 2 ms without the pauses).
Then, for 1, 2 and 3 reasoner replicas (started one after the other next to the running
stack; one gateway, one memory, one offline model):

- wait until the partitions are shared: each replica's `partitions_owned` >= floor(P / R)
  and all P held;
- warm up: one turn per client, not measured;
- load: CLIENTS concurrent WebSocket clients, each running TURNS_EACH turns in a row, every
  turn a new conversation (bounded: CLIENTS x TURNS_EACH turns, then it stops);
- report turns/s, p50/p99 turn latency (send -> `turn.completed`), errors (`turn.failed`
  or no end within TURN_TIMEOUT_S), each replica's share of the turns (the growth of its
  `agentry_reasoner_turns_total`), and the model's own time per request (the offline
  model's request duration), so the turn's wait on the model is visible, and the CPU each
  service used during the load (from /proc), so a flat total can be read against the cores.

The stack launcher is tests/stack.py, as in bench/gateway.py: one launcher for tests and
benchmarks rather than a second copy that could drift.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.client import next_frame, send
from tests.stack import Proc, Stack, free_port

PARTITIONS = 64
REPLICAS = (1, 2, 3)
CLIENTS, TURNS_EACH = 64, 5
CHUNK_DELAY_MS = 14  # a "hello there" answer is 22 chunks: 21 pauses x 14 ms = 294 ms of stream
TURN_TIMEOUT_S = 60.0
SHARE_TIMEOUT_S = 30.0
TEXT = "hello there"


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on the process serving /metrics on `port` (0 if none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def turns(proc: Proc) -> float:
    return metric(proc.port, "agentry_reasoner_turns_total")


def owned(proc: Proc) -> float:
    return metric(proc.port, "agentry_reasoner_partitions_owned")


def dead(stack: Stack) -> str:
    """What each process of the stack that exited wrote last (empty when all are alive)."""
    return "".join(
        f"\n{p.name} on {p.port} exited with {p.process.returncode}:\n"
        + "\n".join(p.log_path.read_text(errors="replace").splitlines()[-30:])
        for p in stack.procs
        if not p.alive()
    )


def holdings(procs: list[Proc]) -> list[float]:
    return [owned(p) for p in procs]


def cpu_seconds(procs: list[Proc]) -> dict[str, float]:
    """CPU seconds (user + system) used so far, summed by service (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for proc in procs:
        try:
            fields = Path(f"/proc/{proc.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[proc.name] = used.get(proc.name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def until_shared(stack: Stack, replicas: int) -> tuple[float, list[float]]:
    """Seconds until `replicas` live reasoners each hold >= floor(P / R) partitions and
    together all P; and what each holds then."""
    started = time.monotonic()
    fair = PARTITIONS // replicas
    while True:
        procs = stack.replicas("reasoner")
        shares = await asyncio.to_thread(holdings, procs)
        if len(procs) == replicas and sum(shares) == PARTITIONS and min(shares) >= fair:
            return time.monotonic() - started, shares
        if time.monotonic() - started > SHARE_TIMEOUT_S:
            raise RuntimeError(f"reasoner partitions not shared after {SHARE_TIMEOUT_S}s: {shares}{dead(stack)}")
        await asyncio.sleep(0.2)


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    timed_out: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return self.failed + self.timed_out


async def one_turn(ws: ClientConnection) -> tuple[str, float]:
    """Sends a message opening a new conversation; its end (`turn.completed`, `turn.failed`)
    and seconds from send to that end. Raises TimeoutError when it does not end in time."""
    started = time.perf_counter()
    deadline = started + TURN_TIMEOUT_S
    await send(ws, {"type": "message", "text": TEXT})
    while True:
        frame = await next_frame(ws, timeout=max(0.01, deadline - time.perf_counter()))
        if frame["type"] in ("turn.completed", "turn.failed"):
            return frame["type"], time.perf_counter() - started


async def load(ws_url: str, clients: int, turns_each: int) -> Load:
    """`clients` sockets, each running `turns_each` new conversations one after another."""
    result = Load()

    async def client(i: int) -> None:
        done = 0
        while done < turns_each:  # every attempt counts: the loop ends after turns_each
            async with connect(f"{ws_url}?user=scale{i}", max_size=None) as ws:
                while done < turns_each:
                    done += 1
                    try:
                        end, seconds = await one_turn(ws)
                    except (TimeoutError, ConnectionClosed):
                        result.timed_out += 1
                        break  # a fresh socket: late frames of that turn must not end the next
                    if end == "turn.completed":
                        result.latencies.append(seconds)
                    else:
                        result.failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class Row:
    replicas: int
    load: Load
    shares: list[float]
    owned: list[float]
    shared_after: float
    model_ms: float
    cpu: dict[str, float]


async def configuration(stack: Stack, replicas: int) -> Row:
    while len(stack.replicas("reasoner")) < replicas:
        proc = stack.start("reasoner", port=free_port())
        await asyncio.to_thread(stack.wait_ready, proc)
    shared_after, holding = await until_shared(stack, replicas)
    await load(stack.ws_url, CLIENTS, 1)  # warm-up, not measured
    procs = stack.replicas("reasoner")
    model = stack.ports["offline-model"]
    duration = "agentry_offline_model_request_duration_seconds"

    def snapshot() -> tuple[list[float], float, float, dict[str, float]]:
        counts = [turns(p) for p in procs]
        return counts, metric(model, f"{duration}_sum"), metric(model, f"{duration}_count"), cpu_seconds(stack.procs)

    before, model_sum, model_count, cpu_before = await asyncio.to_thread(snapshot)
    measured = await load(stack.ws_url, CLIENTS, TURNS_EACH)
    after, model_sum_after, model_count_after, cpu_after = await asyncio.to_thread(snapshot)
    cpu = {name: (cpu_after[name] - cpu_before.get(name, 0.0)) / measured.seconds for name in cpu_after}
    done = [b - a for a, b in zip(before, after, strict=True)]
    requests = model_count_after - model_count
    model_ms = (model_sum_after - model_sum) / requests * 1000 if requests else float("nan")
    return Row(replicas, measured, done, holding, shared_after, model_ms, cpu)


def table(rows: list[Row], loads: tuple[float, float]) -> None:
    print(
        f"{CLIENTS} clients x {TURNS_EACH} turns (each a new conversation, {TEXT!r}) per configuration; "
        f"{PARTITIONS} partitions; offline model pausing {CHUNK_DELAY_MS} ms between chunks; "
        f"1 gateway, 1 memory; {os.cpu_count()} CPUs; load average (1 min) {loads[0]:.1f} before the run "
        f"(other work on the machine), {loads[1]:.1f} after\n"
    )
    print("| reasoners | turns/s | p50 (ms) | p99 (ms) | errors | turns per replica (share) | partitions owned |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        total = sum(row.shares) or 1
        shares = " / ".join(f"{n:.0f} ({n / total:.0%})" for n in row.shares)
        held = " / ".join(f"{n:.0f}" for n in row.owned)
        lat = row.load.latencies
        errors = f"{row.load.errors} ({row.load.failed} failed, {row.load.timed_out} timed out)"
        rate = len(lat) / row.load.seconds
        cells = [f"{rate:.1f}", f"{pct(lat, 0.5):.0f}", f"{pct(lat, 0.99):.0f}", errors, shares, held]
        print(f"| {row.replicas} | " + " | ".join(cells) + " |")
    print()
    for row in rows:
        busy = ", ".join(f"{name} {share:.2f}" for name, share in sorted(row.cpu.items(), key=lambda kv: -kv[1]))
        print(
            f"- {row.replicas} reasoner(s): partitions shared {row.shared_after:.1f} s after the last one was ready; "
            f"{len(row.load.latencies)} turns completed in {row.load.seconds:.1f} s; "
            f"the model's own time per request {row.model_ms:.0f} ms; "
            f"CPU in use {sum(row.cpu.values()):.2f} cores ({busy})"
        )


async def run() -> None:
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            AGENTRY_PARTITIONS=str(PARTITIONS),
            OFFLINE_MODEL_CHUNK_DELAY_MS=str(CHUNK_DELAY_MS),
            LOG_LEVEL="WARNING",
        )
        try:
            await asyncio.to_thread(stack.start_all)
            for replicas in REPLICAS:
                rows.append(await configuration(stack, replicas))
        finally:
            await asyncio.to_thread(stack.close)
    table(rows, (load_before, os.getloadavg()[0]))
