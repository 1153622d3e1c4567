"""Least privilege on the broker: the tool-runner's own user can do its work and no more.

The per-service users of a fresh namespace are made by scripts/broker-users.py, as
`make run` makes them; nothing is started: the test connects with the tool-runner's
credentials itself.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiormq
import pytest
from agentry_shared.bus import Bus
from agentry_shared.topology import Topology
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tests.stack import AMQP_URL, broker_users, broker_users_script, delete_broker_users, delete_namespace

pytestmark = pytest.mark.e2e
PARTITIONS = 2


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[tuple[Topology, dict[str, str]]]:
    topology = Topology(f"t{uuid.uuid4().hex[:12]}", PARTITIONS)
    urls = broker_users(topology.namespace, tmp_path / "users.env")
    admin = Bus(AMQP_URL, topology, name="test-admin")  # declares every exchange, as an operator
    await admin.connect()
    try:
        yield topology, urls
    finally:
        await admin.close()
        delete_broker_users(topology.namespace)
        await delete_namespace(topology.namespace, PARTITIONS, pools=("python",))  # the tests' own pool


async def refused(url: str, action: Callable[[AbstractChannel], Awaitable[object]]) -> bool:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        try:
            await action(channel)
        except aiormq.exceptions.ChannelAccessRefused:
            return True
        return False


async def test_the_tool_runner_cannot_post_turns_or_read_frames(users: tuple[Topology, dict[str, str]]) -> None:
    t, urls = users
    url = urls["tool-runner"]
    message = aio_pika.Message(b'{"kind": "turn.requested"}')

    async def publish_to(exchange: str) -> Callable[[AbstractChannel], Awaitable[object]]:
        async def action(channel: AbstractChannel) -> object:
            target = await channel.get_exchange(exchange, ensure=False)
            return await target.publish(message, routing_key="0")

        return action

    assert await refused(url, await publish_to(t.log_exchange))
    assert await refused(url, await publish_to(t.turns_exchange))

    async def listen_to_frames(channel: AbstractChannel) -> object:
        queue = await channel.declare_queue(f"{t.namespace}.tool-runner.{uuid.uuid4().hex}", exclusive=True)
        return await queue.bind(t.frames_exchange, routing_key="#")

    async def consume_the_log(channel: AbstractChannel) -> object:
        queue = await channel.get_queue(t.log_queue(0), ensure=False)
        return await queue.consume(_ignore)

    async def read_memory_requests(channel: AbstractChannel) -> object:
        queue = await channel.get_queue(t.memory_rpc_queue, ensure=False)
        return await queue.consume(_ignore)

    async def delete_the_log(channel: AbstractChannel) -> object:
        return await channel.exchange_delete(t.log_exchange)

    memory = Bus(urls["memory"], t, name="memory")
    await memory.connect()
    try:
        await memory.declare_work_queue(
            await memory.channel(1), t.log_queue(0), t.log_exchange, "0", single_active=True
        )
        await memory.serve_rpc(t.memory_rpc, _echo)
        for action in (listen_to_frames, consume_the_log, read_memory_requests, delete_the_log):
            assert await refused(url, action), action.__name__
    finally:
        await memory.close()


async def _ignore(_: AbstractIncomingMessage) -> None:
    return None


async def _echo(body: bytes) -> bytes:
    return b"echo:" + body


async def test_the_tool_runner_can_do_its_work(users: tuple[Topology, dict[str, str]]) -> None:
    t, urls = users
    memory = Bus(urls["memory"], t, name="memory")
    runner = Bus(urls["tool-runner"], t, name="tool-runner")
    reasoner = Bus(urls["reasoner"], t, name="reasoner")
    for bus in (memory, runner, reasoner):
        await bus.connect()
    try:
        await memory.serve_rpc(t.memory_rpc, _echo)
        # its pool queue (quorum, dead-lettering), the catalog, and the control broadcast
        await runner.declare_work_queue(
            await runner.channel(4), t.tool_queue("python"), t.tools_exchange, "python", single_active=False
        )
        await runner.serve_rpc(t.tool_catalog, _echo)
        control = await (await runner.channel(4)).declare_queue(
            f"{t.namespace}.tool-runner.{uuid.uuid4().hex}", exclusive=True
        )
        await control.bind(t.control_exchange, routing_key="")
        # replies to a caller through the replies exchange
        assert await reasoner.request(t.tool_catalog, b"catalog?") == b"echo:catalog?"
        # and asks memory itself (claims, the memory tools)
        assert await runner.request(t.memory_rpc, b"claim?") == b"echo:claim?"
    finally:
        for bus in (reasoner, runner, memory):
            await bus.close()


async def test_the_default_exchange_does_not_reach_the_log(users: tuple[Topology, dict[str, str]]) -> None:
    t, urls = users
    memory = Bus(urls["memory"], t, name="memory")
    await memory.connect()
    try:
        await memory.declare_work_queue(
            await memory.channel(1), t.log_queue(0), t.log_exchange, "0", single_active=True
        )

        async def through_the_default_exchange(channel: AbstractChannel) -> object:
            return await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=t.log_queue(0))

        assert await refused(urls["tool-runner"], through_the_default_exchange)
    finally:
        await memory.close()


async def test_the_tool_runner_cannot_hear_other_replies_or_call_tools(users: tuple[Topology, dict[str, str]]) -> None:
    t, urls = users
    url = urls["tool-runner"]

    async def bind_to(key: str) -> Callable[[AbstractChannel], Awaitable[object]]:
        async def action(channel: AbstractChannel) -> object:
            queue = await channel.declare_queue(t.reply_queue("tool-runner", uuid.uuid4().hex), exclusive=True)
            return await queue.bind(t.replies_exchange, routing_key=key)

        return action

    async def call_a_tool(channel: AbstractChannel) -> object:
        tools = await channel.get_exchange(t.tools_exchange, ensure=False)
        return await tools.publish(aio_pika.Message(b"{}"), routing_key="python")

    assert await refused(url, await bind_to(t.reply_queue("reasoner", uuid.uuid4().hex)))
    assert await refused(url, await bind_to("#"))
    assert await refused(url, call_a_tool)
    assert not await refused(url, await bind_to(t.reply_queue("tool-runner", uuid.uuid4().hex)))


async def test_the_definitions_docker_compose_loads_make_working_users(tmp_path: Path) -> None:
    """What `broker-users.py compose` writes, imported into a real broker (without the vhost
    and the administrator, which a shared test broker already has): the password hashes
    let each service in, and the permissions are those of access.py."""
    broker = urlsplit(AMQP_URL)
    if broker.path not in ("", "/"):
        pytest.skip("the compose definitions are for the vhost /")
    topology = Topology(f"t{uuid.uuid4().hex[:12]}", PARTITIONS)
    script = broker_users_script()
    script.compose(topology.namespace, tmp_path / "compose", host=f"{broker.hostname}:{broker.port or 5672}")
    document = json.loads((tmp_path / "compose" / "definitions.json").read_text())
    admin = f"{topology.namespace}-admin"
    imported = {
        "users": [u for u in document["users"] if u["name"] != admin],
        "permissions": [p for p in document["permissions"] if p["user"] != admin],
        "topic_permissions": document["topic_permissions"],
    }
    # On standard input: rabbitmqctl may run as the broker's user, who cannot read tmp_path.
    command = ["rabbitmqctl", "-q", "import_definitions", "--format", "json"]
    subprocess.run(command, input=json.dumps(imported), text=True, check=True)
    urls = {s: script.read_env(tmp_path / "compose" / f"{s}.env")["AMQP_URL"] for s in ("gateway", "memory")}
    urls["tool-runner"] = script.read_env(tmp_path / "compose" / "tool-runner.env")["AMQP_URL"]
    operator = Bus(AMQP_URL, topology, name="test-admin")
    await operator.connect()
    memory = Bus(urls["memory"], topology, name="memory")
    gateway = Bus(urls["gateway"], topology, name="gateway")
    try:
        for bus in (memory, gateway):
            await bus.connect()
        await memory.serve_rpc(topology.memory_rpc, _echo)
        assert await gateway.request(topology.memory_rpc, b"hello?") == b"echo:hello?"

        async def through_the_default_exchange(channel: AbstractChannel) -> object:
            return await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=topology.log_queue(0))

        assert await refused(urls["tool-runner"], through_the_default_exchange)
    finally:
        for bus in (gateway, memory, operator):
            await bus.close()
        delete_broker_users(topology.namespace)
        await delete_namespace(topology.namespace, PARTITIONS)
