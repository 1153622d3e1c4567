"""Every exchange and queue name, and the partitioning rule: the single source of truth.

The path of a turn through the broker:

    gateway --TurnRequested--> log.<p>   (memory: assigns seq, stores, forwards)
    memory  --TurnRequested--> turns.<p> (reasoner: one turn per conversation at a time)
    reasoner --EventPosted--> log.<p>    (memory: assigns seq, stores, fans out)
    memory  --ServerFrame-->  frames     (routing key = conversation_id; gateways bind)
    reasoner --ToolRequested--> tools.<pool> (tool-runner; reply to the caller)
    anyone  --MemoryRequest--> memory.rpc, --CatalogRequested--> tools.catalog
    replicas --Heartbeat--> members       (routing key = role: who is alive, who owns what)
    memory  --CancelRequested--> control (fanout: every reasoner and tool-runner)
    dead    <-- work messages that failed `x-delivery-limit` times (memory tells the user)
    dead.handled <-- memory: each dead letter it handled, kept for operators (bounded)

`log.<p>` and `turns.<p>` are quorum queues with single-active-consumer and the same
partition of a conversation, so each conversation has exactly one writer of its event
sequence and one reasoner at a time, whatever the number of replicas. Which replica
subscribes to which partition is decided by `partitions/` (each does its share).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agentry_shared.settings import CommonSettings


def partition_of(conversation_id: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike hash())."""
    digest = hashlib.blake2b(conversation_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True)
class Topology:
    namespace: str
    partitions: int
    # Deliveries of a work message before it is dead-lettered (quorum `x-delivery-limit`).
    # Every service of a namespace must agree: the broker refuses a queue re-declared
    # with other arguments.
    delivery_limit: int = 20

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Topology:
        return cls(settings.agentry_namespace, settings.agentry_partitions, settings.agentry_delivery_limit)

    @property
    def log_exchange(self) -> str:
        return f"{self.namespace}.log"

    @property
    def turns_exchange(self) -> str:
        return f"{self.namespace}.turns"

    @property
    def frames_exchange(self) -> str:
        return f"{self.namespace}.frames"

    @property
    def tools_exchange(self) -> str:
        return f"{self.namespace}.tools"

    @property
    def control_exchange(self) -> str:
        """Fanout: cancel requests reach every reasoner and tool-runner."""
        return f"{self.namespace}.control"

    @property
    def members_exchange(self) -> str:
        """Heartbeats of the replicas of each role (routing key = role), see partitions/."""
        return f"{self.namespace}.members"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def handled_dead_letter_queue(self) -> str:
        """Dead letters memory has handled, kept (bounded) so agentry-admin lists them too."""
        return f"{self.namespace}.dead.handled"

    @property
    def memory_rpc_queue(self) -> str:
        return f"{self.namespace}.memory.rpc"

    @property
    def tool_catalog_queue(self) -> str:
        return f"{self.namespace}.tools.catalog"

    def log_queue(self, partition: int) -> str:
        return f"{self.namespace}.log.{partition}"

    def turns_queue(self, partition: int) -> str:
        return f"{self.namespace}.turns.{partition}"

    def tool_queue(self, pool: str) -> str:
        return f"{self.namespace}.tools.{pool}"

    def partition(self, conversation_id: str) -> int:
        return partition_of(conversation_id, self.partitions)

    def durable_queues(self, pools: list[str]) -> list[str]:
        """Every shared queue of this namespace (for operators and test clean-up)."""
        return [
            *(self.log_queue(p) for p in range(self.partitions)),
            *(self.turns_queue(p) for p in range(self.partitions)),
            *(self.tool_queue(pool) for pool in pools),
            self.memory_rpc_queue,
            self.tool_catalog_queue,
            self.dead_letter_queue,
            self.handled_dead_letter_queue,
        ]

    def exchanges(self) -> list[str]:
        return [
            self.log_exchange,
            self.turns_exchange,
            self.frames_exchange,
            self.tools_exchange,
            self.control_exchange,
            self.members_exchange,
            self.dead_letter_exchange,
        ]
