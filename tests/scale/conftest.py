"""Scale-out: several replicas of a role on one namespace, each doing its share."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.client import send
from tests.faults.conftest import metric
from tests.stack import Proc, Stack

pytestmark = pytest.mark.scale

PARTITIONS = 64


def owned(proc: Proc, service: str) -> float:
    return metric(proc, f"agentry_{service}_partitions_owned")


async def until_shared(stack: Stack, service: str, replicas: int, timeout: float) -> float:
    """Seconds until `replicas` live processes of `service` each hold their share of the
    partitions and together all of them (raises after `timeout`)."""
    started = time.monotonic()
    fair = PARTITIONS // replicas
    while True:
        procs = stack.replicas(service)
        shares = [owned(p, service) for p in procs]
        if len(procs) == replicas and sum(shares) == PARTITIONS and min(shares) >= fair:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{service} shares after {timeout}s: {shares}")
        await asyncio.sleep(0.2)


class Conversation:
    """One client socket on one conversation, recording every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.id: str | None = None
        self.frames: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        message: dict[str, Any] = {"type": "message", "text": text}
        if self.id is not None:
            message["conversation_id"] = self.id
        await send(self.ws, message)
        if self.id is None:  # the server names the conversation in its first frame
            frame = await self.next()
            self.id = frame["conversation_id"]

    async def next(self, timeout: float = 60.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def until_ended(self, turns: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(f["type"] in ("turn.completed", "turn.failed") for f in self.frames) < turns:
            await self.next(max(0.1, deadline - time.monotonic()))


async def run_turns(stack: Stack, conversations: int, turns_each: int, text: str, sockets: int) -> list[Conversation]:
    """`conversations` new conversations of `turns_each` turns (queued at once), over
    `sockets` concurrent clients; returns every conversation with its frames."""
    done: list[Conversation] = []
    todo = list(range(conversations))

    async def client(n: int) -> None:
        # One user per socket, as many clients are: one user's sockets are capped
        # (GATEWAY_MAX_SOCKETS_PER_USER, 16 by default).
        async with connect(f"{stack.ws_url}?user=scale-{n}", max_size=None) as ws:
            while todo:
                todo.pop()
                conversation = Conversation(ws)
                await conversation.send(text)
                for _ in range(turns_each - 1):
                    await conversation.send(text)
                await conversation.until_ended(turns_each)
                done.append(conversation)

    await asyncio.gather(*(client(n) for n in range(sockets)))
    return done


def assert_in_order_exclusive_once(conversation: Conversation, turns: int) -> None:
    """What a client of one conversation must see whatever moved under it: seq 1..N with no
    gap or repeat, turns started in the order accepted, never two at once, each ended once."""
    frames = conversation.frames
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(seqs) + 1)), f"seq not gap-free: {seqs}"
    accepted = [f["turn_id"] for f in frames if f["type"] == "message.accepted"]
    assert len(accepted) == turns == len(set(accepted))
    ended = [f["turn_id"] for f in frames if f["type"] in ("turn.completed", "turn.failed")]
    assert sorted(ended) == sorted(accepted), "a turn ended twice or never"
    failed = [f for f in frames if f["type"] == "turn.failed"]
    assert not failed, failed
    running: str | None = None
    order: list[str] = []
    for f in frames:
        if f["type"] in ("message.accepted",) or f.get("turn_id") is None:
            continue
        if running is None:
            running = f["turn_id"]
            if not order or order[-1] != running:
                order.append(running)
        assert f["turn_id"] == running, f"turn {f['turn_id']} overlaps {running}: {f}"
        if f["type"] in ("turn.completed", "turn.failed"):
            running = None
    assert order == accepted, "turns ran out of the order they were accepted in"
