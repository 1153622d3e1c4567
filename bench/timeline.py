"""Where a turn's time goes, without tracing: one timeline of every process, by turn.

Starts a full stack (as `turns` does: its own namespace, the offline model with no pause)
with `bench/probe` on each service's PYTHONPATH: its `sitecustomize` stamps every AMQP
publish, confirm and delivery and the entry and exit of the main handlers with
CLOCK_MONOTONIC, one clock for all processes. This process sends N sequential turns of
each kind through one WebSocket and stamps the send and the first `message.delta`.

Printed per kind: the median offset (ms from the client's send) of each stamp seen in at
least 80 % of the turns, in time order. Read the gaps: a `pub>` to the next process's
`dlv` is a broker crossing, a `dlv` to that process's next `pub>` is its own handling.
The stamps cost a few microseconds each; turns run one at a time, so a stamp without a
turn id (a store commit, a model call) inside a turn's window is that turn's.
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.client import next_frame, send
from tests.stack import Stack

RUNS = int(os.environ.get("BENCH_TIMELINE_RUNS", "60"))
WARMUP = 3
KINDS = {"one calculator call": "what is 37*91?", "no tool": "hello there"}
PROBE = Path(__file__).resolve().parent / "probe"
SEEN_IN = 0.8  # a stamp must be in this share of the turns to be printed


@dataclass(frozen=True)
class Sent:
    turn_id: str
    sent: int  # monotonic ns
    first: int
    done: int


@dataclass(frozen=True)
class Stamp:
    at: int
    service: str
    event: str
    turn_id: str
    call_id: str
    detail: str

    @property
    def label(self) -> str:
        return f"{self.service} {self.event}" + ("" if self.detail == "-" else f" {self.detail}")


async def turns(ws: Any, text: str, runs: int) -> list[Sent]:
    conversation: str | None = None
    sent: list[Sent] = []
    for i in range(runs + WARMUP):
        message: dict[str, Any] = {"type": "message", "text": text}
        if conversation:
            message["conversation_id"] = conversation
        started, first = time.monotonic_ns(), 0
        await send(ws, message)
        while True:
            frame = await next_frame(ws, timeout=60)
            if frame["type"] == "message.delta" and not first:
                first = time.monotonic_ns()
            if frame["type"] in ("turn.completed", "turn.failed"):
                assert frame["type"] == "turn.completed", frame
                conversation = frame["conversation_id"]
                if i >= WARMUP:
                    sent.append(Sent(frame["turn_id"], started, first, time.monotonic_ns()))
                break
    return sent


def read_stamps(folder: Path) -> list[Stamp]:
    stamps = []
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            at, service, event, turn_id, call_id, detail = line.split(" ", 5)
            stamps.append(Stamp(int(at), service, event, turn_id, call_id, detail))
    return sorted(stamps, key=lambda s: s.at)


def timeline(sent: list[Sent], stamps: list[Stamp]) -> list[tuple[float, str]]:
    """(median ms from the send, label #occurrence) of the stamps most turns have."""
    turn_of_call = {s.call_id: s.turn_id for s in stamps if s.call_id != "-" and s.turn_id != "-"}
    offsets: dict[str, list[float]] = collections.defaultdict(list)
    for turn in sent:
        seen: collections.Counter[str] = collections.Counter()
        for stamp in stamps:
            if not turn.sent <= stamp.at <= turn.done:
                continue
            owner = stamp.turn_id if stamp.turn_id != "-" else turn_of_call.get(stamp.call_id, "-")
            if owner not in ("-", turn.turn_id):
                continue
            seen[stamp.label] += 1
            offsets[f"{stamp.label} #{seen[stamp.label]}"].append((stamp.at - turn.sent) / 1e6)
        offsets["client first message.delta"].append((turn.first - turn.sent) / 1e6)
    rows = [(statistics.median(v), label) for label, v in offsets.items() if len(v) >= SEEN_IN * len(sent)]
    return sorted(rows)


async def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stamps_dir = Path(tmp) / "stamps"
        stamps_dir.mkdir()
        python_path = os.pathsep.join(p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p)
        stack = Stack(
            Path(tmp),
            AGENTRY_PARTITIONS="64",
            OFFLINE_MODEL_CHUNK_DELAY_MS="0",
            REASONER_TOOL_CALLS_PER_MINUTE="0",
            GATEWAY_MAX_FRAMES_PER_SECOND="1000",
            PYTHONPATH=python_path,
            AGENTRY_PROBE_DIR=str(stamps_dir),
        )
        try:
            await asyncio.to_thread(stack.start_all)
            sent: dict[str, list[Sent]] = {}
            async with connect(f"{stack.ws_url}?user=bench-timeline") as ws:
                for kind, text in KINDS.items():
                    sent[kind] = await turns(ws, text, RUNS)
        finally:
            await asyncio.to_thread(stack.close)
        stamps = read_stamps(stamps_dir)
    print(
        f"{RUNS} sequential turns per kind through one WebSocket; offline model with no pause; median ms "
        "from the client's send. pub> handed to aiormq, pub< confirmed, dlv delivered (body read); "
        "name> / name< a handler's entry and exit."
    )
    for kind, turns_sent in sent.items():
        print(f"\n{kind}\n")
        print("| ms | stamp |\n|---|---|")
        for offset, label in timeline(turns_sent, stamps):
            print(f"| {offset:.2f} | {label} |")
