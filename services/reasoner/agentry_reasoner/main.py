"""Wires the reasoner: broker, model client, turn consumer, ops endpoints."""

from __future__ import annotations

import asyncio
import logging

from agentry_shared.bus import Bus
from agentry_shared.lifecycle import run_service
from agentry_shared.metrics import publish_build_info
from agentry_shared.ops import OpsServer, ReadinessCheck, build_ops_app
from agentry_shared.settings import ReasonerSettings
from agentry_shared.topology import Topology
from openai import AsyncOpenAI

from agentry_reasoner.breaker import CircuitBreaker
from agentry_reasoner.handlers import TurnConsumer
from agentry_reasoner.metrics import watch_model
from agentry_reasoner.model import GuardedModel, Model, ModelOptions, OpenAIModel
from agentry_reasoner.model.openai_chat import model_client

log = logging.getLogger(__name__)


def guarded_model(settings: ReasonerSettings, client: AsyncOpenAI) -> GuardedModel:
    def breaker(name: str) -> CircuitBreaker:
        made = CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown_seconds)
        watch_model(name, lambda: made.state)
        return made

    def model(client: AsyncOpenAI, name: str) -> OpenAIModel:
        return OpenAIModel(client, name, ModelOptions.for_model(settings, name))

    models: list[tuple[Model, CircuitBreaker]] = [(model(client, settings.llm_model), breaker(settings.llm_model))]
    if settings.llm_fallback_model:
        fallback_client = client
        if settings.llm_fallback_base_url:
            fallback_client = client.with_options(base_url=settings.llm_fallback_base_url)
        models.append((model(fallback_client, settings.llm_fallback_model), breaker(settings.llm_fallback_model)))
    return GuardedModel(models, retries=settings.llm_max_retries)


def readiness(bus: Bus, stop: asyncio.Event) -> ReadinessCheck:
    """Ready = the broker is connected and the replica is not stopping: once SIGTERM came it
    takes no new turn (it drains), so it must not count as ready, as the other services."""

    def ready() -> tuple[bool, str]:
        if stop.is_set():
            return False, "stopping"
        return (True, "ok") if bus.connected else (False, "broker disconnected")

    return ready


async def serve(stop: asyncio.Event, settings: ReasonerSettings) -> None:
    bus = Bus(
        settings.amqp_url.get_secret_value(),
        Topology.from_settings(settings),
        name="reasoner",
    )
    await bus.connect()
    publish_build_info("reasoner")
    client = model_client(
        settings.openai_base_url,
        settings.openai_api_key.get_secret_value(),
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
    )
    consumer = TurnConsumer(bus, guarded_model(settings, client), settings)
    await consumer.start()
    ops = OpsServer(build_ops_app(readiness(bus, stop)), settings.bind_host, settings.reasoner_port, "REASONER_PORT")
    await ops.start()
    log.info("ready", extra={"model": settings.llm_model, "base_url": settings.openai_base_url})
    await stop.wait()
    await consumer.stop(settings.shutdown_grace_seconds)
    await ops.stop()
    await client.close()
    await bus.close()


def main() -> None:
    settings = ReasonerSettings()
    run_service("reasoner", lambda stop: serve(stop, settings), settings.log_level)
