"""Delete a namespace: its shared queues (topology.durable_queues) and its exchanges.

Per-process queues (a gateway's, a replica's heartbeat queue) are exclusive and go with
their connection. Deleting a queue drops what it holds: the command asks for `--yes`.
"""

from __future__ import annotations

import contextlib

import aio_pika
from agentry_shared.topology import Topology

# The tool pools the built-in registry uses (tool-runner tools/builtin); --pool adds others.
POOLS = ("default", "network", "sandbox")


async def delete(connection: aio_pika.abc.AbstractConnection, topology: Topology, pools: list[str]) -> list[str]:
    """Returns the names it deleted (a queue that was not there is no error)."""
    deleted: list[str] = []
    for name in topology.durable_queues(pools):
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.queue_delete(name)
            deleted.append(name)
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.close()
    channel = await connection.channel()
    for name in topology.exchanges():
        await channel.exchange_delete(name)
        deleted.append(name)
    await channel.close()
    return deleted
