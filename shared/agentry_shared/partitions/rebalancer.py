"""Keeps one replica holding its share of the partitions as members come and go.

The service says how to take a partition (`acquire`: subscribe to its queue on a channel
of its own) and how to let one go (`release`: stop starting new work from it, finish or
hand back what it holds, then close that channel). Closing the channel is what makes a
move safe: the broker returns every unacked message in queue order and only then makes
the next subscriber (the new owner, waiting under single active consumer) active. So the
new owner subscribes at once and starts exactly when the old one has let go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from agentry_shared.partitions.assignment import assign
from agentry_shared.partitions.membership import Membership

log = logging.getLogger(__name__)

PartitionAction = Callable[[int], Awaitable[None]]


class Rebalancer:
    def __init__(
        self,
        partitions: int,
        acquire: PartitionAction,
        release: PartitionAction,
        *,
        owned: Gauge,
        rebalances: Counter,
        settle: float,
    ) -> None:
        self.partitions = partitions
        self._acquire = acquire
        self._release = release
        self._owned_gauge = owned
        self._rebalances = rebalances
        self.settle = settle
        self.membership: Membership | None = None
        self.held: set[int] = set()
        self._releasing: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def attach(self, membership: Membership) -> None:
        self.membership = membership

    def changed(self) -> None:
        """Membership changed (or a release finished): converge again soon."""
        self._wake.set()

    async def start(self) -> None:
        """Listen one settle period before the first assignment, so a replica joining a
        running stack does not first claim every partition as if it were alone."""
        await asyncio.sleep(self.settle)
        await self._converge()
        self._task = asyncio.create_task(self._loop(), name="rebalancer")

    def desired(self) -> frozenset[int]:
        assert self.membership is not None, "attach() first"
        members = self.membership.members()
        return assign(members, self.partitions).get(self.membership.member_id, frozenset())

    async def stop(self) -> None:
        """Let every partition go (each finishes or hands back what it holds)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for p in sorted(self.held - set(self._releasing)):
            self._start_release(p)
        await asyncio.gather(*self._releasing.values(), return_exceptions=True)
        self._owned_gauge.set(0)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Joins and leaves come in bursts (a deployment rolls several pods): let them land.
            await asyncio.sleep(0.2)
            try:
                await self._converge()
            except Exception:
                log.exception("rebalance failed; trying again")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _converge(self) -> None:
        if self._stopping:
            return
        want = self.desired()
        take = sorted(p for p in want - self.held if p not in self._releasing)
        give = sorted(p for p in self.held - want if p not in self._releasing)
        if not take and not give:
            return
        self._rebalances.inc()
        for p in take:
            await self._acquire(p)
            self.held.add(p)
        for p in give:
            self._start_release(p)
        self._owned_gauge.set(len(self.held))
        log.info(
            "partitions handed over",
            extra={"acquired": take, "released": give, "owned": len(want), "members": self._member_count()},
        )

    def _member_count(self) -> int:
        return len(self.membership.members()) if self.membership is not None else 1

    def _start_release(self, p: int) -> None:
        async def release() -> None:
            try:
                await self._release(p)
            except Exception:
                log.exception("releasing a partition failed", extra={"partition": p})
            finally:
                self.held.discard(p)
                self._releasing.pop(p, None)
                self._owned_gauge.set(len(self.held))
                self.changed()  # it may be ours again by now

        self._releasing[p] = asyncio.create_task(release(), name=f"release-{p}")
