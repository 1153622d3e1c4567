"""Every exchange and queue name, and the partitioning rule: the single source of truth.

The path of a turn through the broker:

    gateway --TurnRequested--> log.<p>   (memory: assigns seq, stores, forwards)
    memory  --TurnRequested--> turns.<p> (reasoner: one turn per conversation at a time)
    reasoner --EventPosted--> log.<p>    (memory: assigns seq, stores, fans out)
    memory  --ServerFrame-->  frames     (routing key = conversation_id; gateways bind)
    reasoner --ToolRequested--> tools    (routing key = pool: tool-runner; reply to the caller)
    anyone  --MemoryRequest--> memory    (memory.rpc), reasoner --CatalogRequested--> tools (tools.catalog)
    server  --reply-->        replies    (routing key = the caller's own replies.<name>.<uuid> queue)
    replicas --Heartbeat--> members       (routing key = role: who is alive, who owns what)
    memory  --CancelRequested--> control (fanout: every reasoner and tool-runner)
    dead    <-- work messages that failed `x-delivery-limit` times (memory tells the user)
    dead.handled <-- memory: each dead letter it handled, kept for operators (bounded)

`log.<p>` and `turns.<p>` are quorum queues with single-active-consumer and the same
partition of a conversation, so each conversation has exactly one writer of its event
sequence and one reasoner at a time, whatever the number of replicas. Which replica
subscribes to which partition is decided by `partitions/` (each does its share).

Nothing goes through the default exchange: it reaches every queue by name, so a service
allowed to write to it could post into any queue (docs/deploy.md, "Broker users"). Each
RPC goes through the exchange of its callee, each reply through `replies`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from agentry_shared.settings import NAMESPACE_PATTERN, CommonSettings

# The tail of a reply queue's name: `<client name>.<hex uuid>`.
REPLY_NAME = r"[A-Za-z0-9_-]+\.[0-9a-f]+"


def partition_of(conversation_id: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike hash())."""
    digest = hashlib.blake2b(conversation_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True)
class RpcTarget:
    """Where requests to one RPC server go: published to `exchange` with `routing_key`,
    they reach the shared `queue` its replicas serve."""

    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    namespace: str
    partitions: int
    # Deliveries of a work message before it is dead-lettered (quorum `x-delivery-limit`).
    # Every service of a namespace must agree: the broker refuses a queue re-declared
    # with other arguments.
    delivery_limit: int = 20

    def __post_init__(self) -> None:
        if not re.fullmatch(NAMESPACE_PATTERN, self.namespace):
            raise ValueError(
                f"namespace {self.namespace!r}: 1 to 64 letters, digits, '_' or '-' (no dot: it would "
                "let one namespace's broker permissions reach another's queues)"
            )

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
    def memory_exchange(self) -> str:
        """Requests to the memory service (routing key `rpc`)."""
        return f"{self.namespace}.memory"

    @property
    def replies_exchange(self) -> str:
        """Topic: RPC replies, routing key = the caller's reply queue (`reply_queue`)."""
        return f"{self.namespace}.replies"

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
    def handled_dead_letter_exchange(self) -> str:
        """A fanout to `handled_dead_letter_queue` (same name): memory keeps what it handled
        through it, never through the default exchange, which reaches every queue."""
        return f"{self.namespace}.dead.handled"

    @property
    def memory_rpc_queue(self) -> str:
        return f"{self.namespace}.memory.rpc"

    @property
    def tool_catalog_queue(self) -> str:
        return f"{self.namespace}.tools.catalog"

    @property
    def memory_rpc(self) -> RpcTarget:
        return RpcTarget(self.memory_rpc_queue, self.memory_exchange, "rpc")

    @property
    def tool_catalog(self) -> RpcTarget:
        return RpcTarget(self.tool_catalog_queue, self.tools_exchange, "catalog")

    def tool_pool(self, pool: str) -> RpcTarget:
        """Tool calls of `pool`: its tool-runners consume `tool_queue(pool)`."""
        return RpcTarget(self.tool_queue(pool), self.tools_exchange, pool)

    def reply_queue(self, client: str, unique: str) -> str:
        """A caller's exclusive reply queue; its name is also its binding key on `replies`."""
        return f"{self.namespace}.replies.{client}.{unique}"

    def is_reply_queue(self, name: str) -> bool:
        """What a server may answer to: a reply queue of this namespace, nothing else."""
        prefix = re.escape(f"{self.namespace}.replies.")
        return re.fullmatch(prefix + REPLY_NAME, name) is not None

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
            self.memory_exchange,
            self.replies_exchange,
            self.dead_letter_exchange,
            self.handled_dead_letter_exchange,
        ]
