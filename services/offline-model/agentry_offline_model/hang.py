"""The `[[model-hang]]` hook: a model that stops mid-answer, for timeout and cancel tests.

The server stays silent (no keep-alives, so the client's read timeout can fire) until the
client disconnects, and gives up after a bound so a forgotten test cannot pin it forever.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

MAX_HANG_S = 600.0
POLL_S = 0.05
GAVE_UP = "offline model: [[model-hang]] gave up waiting for the client to disconnect"


async def hang_until_client_leaves(request: web.Request, limit_s: float) -> bool:
    """Waits until the client's connection closes (True) or `limit_s` passes (False)."""
    deadline = time.monotonic() + limit_s
    while not _client_gone(request):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(POLL_S, remaining))
    return True


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
