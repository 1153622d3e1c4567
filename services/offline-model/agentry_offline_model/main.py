"""Process entry point: serve the offline model until SIGTERM/SIGINT, then stop cleanly."""

from __future__ import annotations

import asyncio
import logging

from agentry_shared.lifecycle import port_in_use, run_service
from agentry_shared.metrics import publish_build_info
from agentry_shared.settings import OfflineModelSettings
from aiohttp import web

from agentry_offline_model.server import build_app

log = logging.getLogger(__name__)


def main() -> None:
    settings = OfflineModelSettings()

    async def service(stop: asyncio.Event) -> None:
        publish_build_info("offline-model")
        # In-flight streams get the shutdown grace to finish; slower ones are cut off.
        runner = web.AppRunner(build_app(settings), access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
        await runner.setup()
        try:
            port = settings.offline_model_port
            try:
                await web.TCPSite(runner, settings.bind_host, port).start()
            except OSError as exc:
                raise port_in_use(exc, "OFFLINE_MODEL_PORT", port) from exc
            log.info(
                "listening",
                extra={"host": settings.bind_host, "port": settings.offline_model_port},
            )
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()

    run_service("offline-model", service, settings.log_level)


if __name__ == "__main__":
    main()
