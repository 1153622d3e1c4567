"""The gateway's view of its broker connection: is it up, and getting it up at start.

The gateway serves sockets and probes whether or not the broker is there: a client is
told `unavailable` (and may retry) instead of finding no server, `/readyz` says 503, and
an orchestrator sees a live process that is waiting for its dependency rather than a crash
loop. Once connected, aio-pika's robust connection reconnects by itself.
"""

from __future__ import annotations

import asyncio
import logging

from agentry_shared.bus import Bus

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5
MAX_RETRY = 5.0


def connected(bus: Bus) -> bool:
    """Connected now, with every channel restored after a reconnect (`Bus.connected`)."""
    connection = bus.connection
    return bus.connected and connection is not None and connection.connected.is_set()


async def connect_until_up(bus: Bus) -> None:
    """`bus.connect()` until it works, backing off up to MAX_RETRY seconds between tries.

    `Bus.connect` fails fast when nothing listens; a robust connection that never made it
    would not retry on its own, so this does.
    """
    pause, attempt = FIRST_RETRY, 0
    while True:
        attempt += 1
        try:
            await bus.connect()
        except Exception as exc:
            if bus.connection is not None:  # connected, then failed declaring: start over
                await asyncio.gather(bus.close(), return_exceptions=True)
                bus.connection = None
            log.warning("broker unreachable; retrying", extra={"attempt": attempt, "error": repr(exc)})
            await asyncio.sleep(pause)
            pause = min(MAX_RETRY, pause * 2)
            continue
        if attempt > 1:
            log.info("broker connected", extra={"attempt": attempt})
        return
