"""Partition ownership across replicas: who is alive (membership), who should hold what
(assignment), and moving partitions safely when that changes (rebalancer)."""

from __future__ import annotations

import uuid

from prometheus_client import Counter, Gauge

from agentry_shared.bus import Bus
from agentry_shared.partitions.membership import Membership
from agentry_shared.partitions.rebalancer import PartitionAction, Rebalancer
from agentry_shared.settings import CommonSettings


class PartitionShare:
    """This replica's share of a role's partitions, kept up to date while it runs."""

    def __init__(
        self,
        bus: Bus,
        role: str,
        settings: CommonSettings,
        *,
        acquire: PartitionAction,
        release: PartitionAction,
        owned: Gauge,
        rebalances: Counter,
    ) -> None:
        self.member_id = f"{role}-{uuid.uuid4().hex[:12]}"
        self.rebalancer = Rebalancer(
            bus.topology.partitions,
            acquire,
            release,
            owned=owned,
            rebalances=rebalances,
            settle=settings.agentry_heartbeat_seconds * 1.5,
        )
        self.membership = Membership(
            bus,
            role,
            self.member_id,
            interval=settings.agentry_heartbeat_seconds,
            timeout=settings.agentry_member_timeout_seconds,
            changed=self.rebalancer.changed,
        )
        self.rebalancer.attach(self.membership)

    @property
    def held(self) -> set[int]:
        return self.rebalancer.held

    async def start(self) -> None:
        await self.membership.start()
        await self.rebalancer.start()

    async def stop(self) -> None:
        """Say goodbye first, so the others subscribe (and wait) while we let go."""
        await self.membership.leave()
        await self.rebalancer.stop()


__all__ = ["Membership", "PartitionShare", "Rebalancer"]
