"""The HTTP side every service has: /healthz (alive), /readyz (can take work), /metrics.

Readiness is a callable so each service decides what "ready" means (broker connected,
store open, ...); Kubernetes and `make run` read these endpoints.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from agentry_shared.lifecycle import port_in_use

ReadinessCheck = Callable[[], tuple[bool, str]]


def metrics_response_body() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def build_ops_app(ready: ReadinessCheck) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, detail = ready()
        return web.json_response({"ready": ok, "detail": detail}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = metrics_response_body()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class OpsServer:
    """Serves an aiohttp app on host:port until stopped."""

    def __init__(self, app: web.Application, host: str, port: int, variable: str = "the port setting") -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self._port = host, port
        self._variable = variable  # named when the port is taken (`PortInUse`)

    async def start(self) -> None:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise port_in_use(exc, self._variable, self._port) from exc

    async def stop(self) -> None:
        await self._runner.cleanup()
