"""Process entry point: wiring, readiness, graceful stop.

At start-up the sandbox is tried once (execution/isolation.py): whether tools run in
bubblewrap, weakly, or are refused is decided then, logged, and exported as gauges.

On SIGTERM the runner stops consuming, lets running calls finish within the grace period
(their children are killed after it), then closes the connection, which hands any
unacknowledged call back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from agentry_shared.bus import Bus
from agentry_shared.lifecycle import run_service
from agentry_shared.metrics import publish_build_info
from agentry_shared.ops import OpsServer, build_ops_app
from agentry_shared.settings import ToolRunnerSettings
from agentry_shared.topology import Topology

from agentry_tool_runner.calls.claims import ClaimTiming
from agentry_tool_runner.calls.handlers import ToolCallConsumer
from agentry_tool_runner.execution.executor import Executor
from agentry_tool_runner.execution.in_worker import InWorkerExecutor
from agentry_tool_runner.execution.isolation import choose
from agentry_tool_runner.execution.mcp import McpExecutor, McpHub, stdio_for
from agentry_tool_runner.execution.memory_service import MemoryServiceExecutor
from agentry_tool_runner.metrics import initialise_tools
from agentry_tool_runner.tools.mcp import config as mcp_config
from agentry_tool_runner.tools.mcp.catalog import McpRegistry
from agentry_tool_runner.tools.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


def served_pools(setting: str, registry: Registry) -> list[str]:
    """The pools named in the setting, or every pool of the registry when it is empty."""
    named = [pool.strip() for pool in setting.split(",") if pool.strip()]
    return sorted(set(named)) if named else registry.pools()


async def service(
    stop: asyncio.Event,
    settings: ToolRunnerSettings | None = None,
    registry: Registry = REGISTRY,
    executor: Executor | None = None,
    timing: ClaimTiming | None = None,
) -> None:
    settings = settings or ToolRunnerSettings()
    publish_build_info("tool-runner")
    topology = Topology.from_settings(settings)
    bus = Bus(settings.amqp_url.get_secret_value(), topology, name="tool-runner")
    describe_memory, isolation = None, None
    if executor is None:  # tries the sandbox once; logs and reports what it found
        isolation = await choose(settings)
        executor, describe_memory = isolation.executor, isolation.describe_memory
    hub: McpHub | None = None
    if settings.tool_runner_mcp_config is not None:  # tools of MCP servers (tools/mcp/, execution/mcp.py)
        hub = McpHub(mcp_config.load(settings.tool_runner_mcp_config), stdio_for(isolation))
        registry = McpRegistry(registry, hub.config, lambda: hub)
        executor = McpExecutor(hub, executor)
    executor = MemoryServiceExecutor(bus, executor)  # remember / recall / tasks: one memory RPC each
    executor = InWorkerExecutor(executor)  # calculator, current_time: pure functions, no child
    consumer = ToolCallConsumer(
        bus, registry, executor, settings.tool_runner_concurrency, timing=timing, memory=describe_memory
    )
    started = False

    def ready() -> tuple[bool, str]:
        if not started:
            return False, "starting"
        if stop.is_set():
            return False, "stopping"
        return (True, "ok") if bus.connected else (False, "broker disconnected")

    ops = OpsServer(build_ops_app(ready), settings.bind_host, settings.tool_runner_port, "TOOL_RUNNER_PORT")
    await ops.start()
    try:
        await bus.connect()
        pools = served_pools(settings.tool_runner_pools, registry)
        if hub is not None:
            await hub.start(pools)
        initialise_tools((tool.name, tool.pool) for tool in registry if tool.pool in pools)
        await consumer.start(pools)
        await consumer.serve_catalog()
        started = True
        log.info("ready", extra={"tools": ",".join(tool.name for tool in registry)})
        await stop.wait()
        log.info("stopping: finishing tool calls in hand")
        await consumer.stop(settings.shutdown_grace_seconds)
    finally:
        if hub is not None:
            await hub.stop()
        await bus.close()
        await ops.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agentry-tool-runner", description=__doc__)
    parser.add_argument("--pools", help="comma-separated pools to serve (overrides TOOL_RUNNER_POOLS)")
    args = parser.parse_args(argv)
    settings = ToolRunnerSettings()
    if args.pools is not None:
        settings = settings.model_copy(update={"tool_runner_pools": args.pools})

    async def run(stop: asyncio.Event) -> None:
        await service(stop, settings)

    run_service("tool-runner", run, settings.log_level, uvloop=False)  # see run_service
