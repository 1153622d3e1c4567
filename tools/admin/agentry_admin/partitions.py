"""Which replica owns which partition: heard from the replicas' heartbeats on `<ns>.members`
(partitions/membership.py), then assigned exactly as the replicas assign them
(partitions/assignment.py): what they compute, from the same members, is what they own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from agentry_shared.partitions.assignment import assign
from agentry_shared.partitions.membership import Heartbeat
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, ExchangeType
from pydantic import ValidationError

ROLES = ("memory", "reasoner")  # the roles that share partitions


async def listen(channel: AbstractChannel, topology: Topology, seconds: float) -> dict[str, set[str]]:
    """Member ids per role heard within `seconds` (a replica that said it is leaving is not one)."""
    exchange = await channel.declare_exchange(topology.members_exchange, ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(
        f"{topology.namespace}.members.admin.{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True
    )
    for role in ROLES:
        await queue.bind(exchange, routing_key=role)
    members: dict[str, set[str]] = {role: set() for role in ROLES}

    async def heard(message: AbstractIncomingMessage) -> None:
        try:
            beat = Heartbeat.model_validate_json(message.body)
        except ValidationError:
            return
        if beat.role in members:
            (members[beat.role].discard if beat.leaving else members[beat.role].add)(beat.member_id)

    tag = await queue.consume(heard, no_ack=True)
    await asyncio.sleep(seconds)
    await queue.cancel(tag)
    return members


def owners(members: dict[str, set[str]], partitions: int) -> dict[str, Any]:
    """Per role: its members, and each partition's owner."""
    report: dict[str, Any] = {}
    for role, ids in members.items():
        shares = assign(ids, partitions)
        owner = {p: member for member, held in shares.items() for p in held}
        report[role] = {
            "members": {member: sorted(held) for member, held in sorted(shares.items())},
            "owners": {str(p): owner.get(p) for p in range(partitions)},
        }
    return report
