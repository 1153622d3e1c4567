"""Start-up and graceful stop shared by every service's `main()`.

A service is an async function that receives a `stop` event: it starts its work, waits
for the event (SIGTERM or SIGINT), stops taking new work, finishes or hands back what it
holds, and returns. The process then exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from agentry_shared.logs import setup_logging

log = logging.getLogger(__name__)

Service = Callable[[asyncio.Event], Awaitable[None]]


def run_service(name: str, service: Service, log_level: str = "INFO") -> None:
    setup_logging(name, log_level)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("starting")
        await service(stop)
        log.info("stopped")

    asyncio.run(_main())
