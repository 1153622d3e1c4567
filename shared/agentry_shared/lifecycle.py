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
import errno
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentry_shared.logs import log_uncaught, setup_logging
from agentry_shared.tracing import setup_tracing

log = logging.getLogger(__name__)

Service = Callable[[asyncio.Event], Awaitable[None]]

# The exit status of a service that cannot take its port: a setting to change, not a crash
# (`scripts/run_all.py` does not restart it).
EXIT_PORT_IN_USE = 78  # EX_CONFIG

# Until run_service knows the service's name: the console script's (`agentry-gateway`).
log_uncaught(Path(sys.argv[0]).stem.removeprefix("agentry-") if sys.argv and sys.argv[0] else "agentry")


class PortInUse(Exception):
    """The port a service listens on is taken; the message names the variable to change."""

    def __init__(self, variable: str, port: int) -> None:
        super().__init__(f"{variable} {port} is in use: set {variable} to a free port")
        self.variable = variable
        self.port = port


def port_in_use(exc: OSError, variable: str, port: int) -> Exception:
    """`PortInUse` for a bind that failed because the port is taken, else `exc` itself."""
    return PortInUse(variable, port) if exc.errno == errno.EADDRINUSE else exc


def run_service(name: str, service: Service, log_level: str = "INFO", *, uvloop: bool = True) -> None:
    """`uvloop`: run on libuv's event loop, which costs a service about a third less CPU per
    message than asyncio's own (docs/benchmarks.md); off for the tool-runner, whose sandbox
    spawning (preexec_fn rlimits, pass_fds, process groups) is tested on asyncio's loop."""
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

    loop_factory = _uvloop_factory() if uvloop else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_main())
    except PortInUse as exc:
        log.error(str(exc), extra={"variable": exc.variable, "port": exc.port})
        sys.exit(EXIT_PORT_IN_USE)
    finally:
        stop_tracing()  # exports the spans still buffered


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not built for this platform: asyncio's loop does the same, slower
        return None

    def new_loop() -> asyncio.AbstractEventLoop:
        # asyncio.Runner makes only its own default loop the thread's current one; code that
        # asks for `asyncio.get_event_loop()` (a library, a thread's callback) must find this.
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop

    return new_loop
