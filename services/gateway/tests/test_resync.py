"""The replay jobs of one socket, with a fake memory client (no broker)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentry_gateway.inbound import Rejected
from agentry_gateway.outbox import Outbox
from agentry_gateway.resync import Resync, Tuning
from agentry_shared.contracts.frames import ErrorFrame
from agentry_shared.contracts.scope import Scope
from agentry_shared.testing import until


class FakeMemory:
    """Serves `stored` (conversation -> seqs); `fail` makes every fetch unavailable."""

    def __init__(self) -> None:
        self.stored: dict[str, list[int]] = {}
        self.fetches: list[tuple[str, int]] = []
        self.served = 0  # pages answered: the fetching job goes on at once, without a tick between
        self.answering = asyncio.Event()  # cleared: fetches wait in flight
        self.answering.set()
        self.fail = False
        self.fail_times = 0

    async def frames(self, scope: Scope, after_seq: int, limit: int) -> list[dict[str, Any]]:
        self.fetches.append((scope.conversation_id, after_seq))
        await asyncio.sleep(0)
        await self.answering.wait()
        if self.fail or self.fail_times > 0:
            self.fail_times -= 1
            raise Rejected("unavailable", "memory is down")
        seqs = [s for s in self.stored.get(scope.conversation_id, []) if s > after_seq][:limit]
        self.served += 1
        return [body(scope.conversation_id, s) for s in seqs]


def body(conversation_id: str, seq: int) -> dict[str, Any]:
    return {"type": "message.delta", "conversation_id": conversation_id, "seq": seq}


class Harness:
    def __init__(self, capacity: int = 64, stall_seconds: float = 5.0, outage_retry_seconds: float = 0.0) -> None:
        self.outbox = Outbox(capacity)
        self.memory = FakeMemory()
        self.errors: list[ErrorFrame] = []
        self.stalled = False
        self.resync = Resync(
            self.outbox,
            self.memory,  # type: ignore[arg-type]
            lambda c: Scope(tenant_id="t", user_id="u", conversation_id=c),
            self._send_error,
            self._stall,
            Tuning(max_held=16, page=2, stall_seconds=stall_seconds, outage_retry_seconds=outage_retry_seconds),
        )

    def _send_error(self, frame: ErrorFrame) -> None:
        """As ClientSession does: in line with the frames."""
        self.errors.append(frame)
        self.outbox.offer_error(frame.model_dump_json().encode())

    def _stall(self) -> None:
        self.stalled = True

    def live(self, conversation_id: str, seq: int) -> None:
        """What ClientSession.deliver does with a frame from the broker."""
        encoded = json.dumps(body(conversation_id, seq)).encode()
        if not self.resync.intercept(conversation_id, seq, "message.delta", encoded):
            self.outbox.offer_frame(conversation_id, seq, "message.delta", encoded)

    async def drained(self) -> list[int | str]:
        for _ in range(20):
            await asyncio.sleep(0)
        out: list[int | str] = []
        while len(self.outbox):
            frame_type, data = await self.outbox.get()
            doc = json.loads(data)
            out.append(doc["code"] if frame_type == "error" else doc["seq"])
        return out


async def test_catch_up_fetches_from_the_last_seq_sent() -> None:
    h = Harness()
    h.live("c", 1)
    h.live("c", 2)
    h.resync.pause(["c"])
    h.memory.stored["c"] = [1, 2, 3, 4, 5]  # 3, 4 published during the outage
    h.live("c", 5)  # after the reconnect, before the catch-up: held
    assert await h.drained() == [1, 2]
    h.resync.catch_up()
    assert await h.drained() == [3, 4, 5]
    assert h.memory.fetches[0] == ("c", 2)
    h.live("c", 6)
    assert await h.drained() == [6]


async def test_catch_up_leaves_a_resume_that_is_still_subscribing() -> None:
    h = Harness()
    h.memory.stored["c"] = [1, 2]
    h.live("other", 1)
    h.resync.resume("c", 0, "r1")  # installed; the session is subscribing
    h.resync.pause(["other"])
    h.resync.catch_up()
    assert await h.drained() == [1]
    assert h.memory.fetches == [("other", 1)]  # not "c": fetching before the subscription could miss frames
    h.resync.start("c")
    assert await h.drained() == [1, 2]


async def test_outage_during_a_resume_restarts_it_from_its_progress() -> None:
    """The outage comes once the replay has made progress: 1 and 2 queued, 3 fetched and
    waiting for the client to make room. 3 still comes, then 4, published during the outage."""
    h = Harness(capacity=2)
    h.memory.stored["c"] = [1, 2, 3]
    h.resync.resume("c", 0, None)
    h.resync.start("c")
    await until(lambda: h.memory.served == 2, "the last page served, 3 waiting for room")
    h.resync.pause(["c"])
    h.memory.stored["c"] = [1, 2, 3, 4]
    h.resync.catch_up()
    assert await h.drained() == [1, 2]
    assert await h.drained() == [3, 4]


async def test_failed_catch_up_asks_the_client_to_resume_and_releases_what_was_held() -> None:
    h = Harness()
    h.live("c", 1)
    h.resync.pause(["c"])
    h.memory.fail = True
    h.live("c", 7)
    h.resync.catch_up()
    assert await h.drained() == [1, "resume_required", 7]
    h.live("c", 8)
    assert await h.drained() == [8]


async def test_catch_up_retries_while_memory_is_not_back() -> None:
    h = Harness(outage_retry_seconds=5.0)
    h.live("c", 1)
    h.resync.pause(["c"])
    h.memory.stored["c"] = [1, 2]
    h.memory.fail_times = 2
    h.resync.catch_up()
    await until(lambda: len(h.memory.fetches) == 3, "the third fetch (two failures, pauses of 0.5 s and 1 s)")
    assert await h.drained() == [1, 2]
    assert h.memory.fetches == [("c", 1)] * 3


async def test_a_resume_is_not_retried() -> None:
    """The client asked and waits: it hears `unavailable` at once and decides."""
    h = Harness(outage_retry_seconds=5.0)
    h.memory.fail_times = 1
    h.resync.resume("c", 0, "r1")
    h.resync.start("c")
    assert await h.drained() == ["unavailable"]


async def test_a_client_that_stops_reading_during_a_replay_is_closed() -> None:
    h = Harness(capacity=4, stall_seconds=0.05)
    h.memory.stored["c"] = list(range(1, 20))
    h.resync.resume("c", 0, None)
    h.resync.start("c")
    await until(lambda: h.stalled, "the stalled client closed")
    assert len(h.outbox) == 3  # paced to half the queue (+1), never filled by the replay


async def test_a_new_resume_replaces_a_running_one() -> None:
    """The first one is fetching when the client asks again from further back: it must hand
    nothing on, or its frames would pass the second one's and hide 1 and 2 as duplicates."""
    h = Harness()
    h.memory.stored["c"] = [1, 2, 3, 4, 5]
    h.memory.answering.clear()
    h.resync.resume("c", 3, "first")
    h.resync.start("c")
    await until(lambda: len(h.memory.fetches) == 1, "the first resume fetching")
    h.resync.resume("c", 0, "second")
    h.resync.start("c")
    h.memory.answering.set()
    assert await h.drained() == [1, 2, 3, 4, 5]
