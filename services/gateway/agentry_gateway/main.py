"""Entry point: `agentry-gateway` (or `python -m agentry_gateway`)."""

from __future__ import annotations

import asyncio
import logging

from agentry_shared.bus import Bus
from agentry_shared.lifecycle import run_service
from agentry_shared.metrics import publish_build_info
from agentry_shared.settings import GatewaySettings
from agentry_shared.topology import Topology

from agentry_gateway.server import Gateway

log = logging.getLogger(__name__)

# Part of the grace period kept for releasing the broker after the sockets are closed.
_BROKER_SHARE = 0.2


async def service(stop: asyncio.Event) -> None:
    settings = GatewaySettings()
    publish_build_info("gateway")
    topology = Topology(settings.agentry_namespace, settings.agentry_partitions)
    bus = Bus(settings.amqp_url.get_secret_value(), topology, name="gateway")
    try:
        gateway = Gateway(settings, bus)
        await gateway.start()  # serves at once; connects to the broker in the background
        await stop.wait()
        log.info("stopping: closing sockets")
        await gateway.stop(settings.shutdown_grace_seconds * (1 - _BROKER_SHARE))
    finally:
        await bus.close()


def main() -> None:
    settings = GatewaySettings()
    run_service("gateway", service, settings.log_level)


if __name__ == "__main__":
    main()
