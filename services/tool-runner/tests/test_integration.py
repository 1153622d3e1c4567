"""The service wiring against the real RabbitMQ, in-process, in a namespace of its own
(fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.tools import TOOL_REPLY, Catalog, CatalogRequested, ToolCompleted, ToolRequested
from prometheus_client import REGISTRY as METRICS

SCOPE = Scope(tenant_id="t1", user_id="u1", conversation_id="c1")


def calculator_call(arguments: dict[str, object], tool: str = "calculator", deadline_in: float = 30) -> bytes:
    return encode(
        ToolRequested(
            scope=SCOPE,
            turn_id="turn-1",
            call_id=f"call-{uuid.uuid4().hex[:8]}",
            tool=tool,
            arguments=arguments,
            deadline=time.time() + deadline_in,
        )
    )


async def call(bus: Bus, body: bytes) -> ToolCompleted:
    reply = TOOL_REPLY.validate_json(await bus.request(bus.topology.tool_pool("default"), body, timeout=15))
    assert isinstance(reply, ToolCompleted)
    assert reply.call_id == ToolRequested.model_validate_json(body).call_id
    return reply


async def test_catalog_and_calls_over_the_broker(client: Bus) -> None:
    catalog = TOOL_REPLY.validate_json(
        await client.request(client.topology.tool_catalog, encode(CatalogRequested()), timeout=10)
    )
    assert isinstance(catalog, Catalog)
    assert {"calculator", "current_time"} <= {tool.name for tool in catalog.tools}

    ok_calls = {"tool": "calculator", "pool": "default", "outcome": "ok"}
    before = METRICS.get_sample_value("agentry_tool_calls_total", ok_calls) or 0
    results = await asyncio.gather(*(call(client, calculator_call({"expression": "37*91"})) for _ in range(3)))
    assert all((r.ok, r.output, r.tool) == (True, "3367", "calculator") for r in results)
    after = METRICS.get_sample_value("agentry_tool_calls_total", ok_calls)
    assert after == before + 3

    invalid = await call(client, calculator_call({"expr": "1+1"}))
    assert invalid.error is not None and invalid.error.code == "invalid_arguments"
    unknown = await call(client, calculator_call({}, tool="rm_rf"))
    assert unknown.error is not None and unknown.error.code == "unknown_tool"
    late = await call(client, calculator_call({"expression": "1+1"}, deadline_in=-1))
    assert late.error is not None and late.error.code == "deadline_exceeded"

    # A body that is not a ToolRequested goes to the dead-letter queue, unanswered.
    await client.publish(client.topology.tools_exchange, "default", b'{"kind": "nonsense"}')
    channel = await client.channel(prefetch=1)
    dead = await channel.get_queue(client.topology.dead_letter_queue, ensure=False)
    for _ in range(50):
        message = await dead.get(no_ack=True, fail=False)
        if message is not None:
            assert message.body == b'{"kind": "nonsense"}'
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the malformed request was not dead-lettered")
