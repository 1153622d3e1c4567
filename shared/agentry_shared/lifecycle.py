"""Start-up and graceful stop shared by every service's `main()`.

A service is an async function that receives a `stop` event: it starts its work, waits
for the event (SIGTERM or SIGINT), stops taking new work, finishes or hands back what it
holds, and returns. The process then exits 0.

Every line on stderr is JSON, crashes included: importing this module (every `main.py`
does, before it reads its settings) already turns an uncaught exception into a JSON line,
so a service that fails at start-up on a bad setting says so in JSON too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentry_shared.logs import log_uncaught, setup_logging
from agentry_shared.tracing import setup_tracing

log = logging.getLogger(__name__)

Service = Callable[[asyncio.Event], Awaitable[None]]

# Until run_service knows the service's name: the console script's (`agentry-gateway`).
log_uncaught(Path(sys.argv[0]).stem.removeprefix("agentry-") if sys.argv and sys.argv[0] else "agentry")


def run_service(name: str, service: Service, log_level: str = "INFO") -> None:
    setup_logging(name, log_level)
    stop_tracing = setup_tracing(name)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("starting")
        await service(stop)
        log.info("stopped")

    try:
        asyncio.run(_main())
    finally:
        stop_tracing()  # exports the spans still buffered
