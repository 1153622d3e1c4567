"""The memory service as a real process: stopped with SIGTERM and started again on the same
data directory, it has lost nothing; the operator's command reads the reasoning beside it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from agentry_shared.bus import Bus, encode
from agentry_shared.contracts.chat import ChatMessage
from agentry_shared.contracts.events import EventPosted
from agentry_shared.contracts.facts import (
    FACT_REPLY,
    FactsRecalled,
    ListTasks,
    RecallFacts,
    RememberFact,
    TaskList,
    UpdateTask,
)
from agentry_shared.contracts.frames import TurnCompleted, arguments_sha256
from agentry_shared.contracts.memory import (
    MEMORY_REPLY,
    AppendMessages,
    Approval,
    BeginTurn,
    Context,
    DecideApproval,
    Frames,
    GetApproval,
    GetContext,
    GetFrames,
    RecordReasoning,
    RequestApproval,
    TurnBegun,
)
from agentry_shared.contracts.scope import Scope
from agentry_shared.contracts.turns import TurnRequested
from agentry_shared.settings import MemorySettings
from agentry_shared.testing import delete_declared
from agentry_shared.topology import Topology
from pydantic import BaseModel, ValidationError

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MemoryProcess:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.settings = MemorySettings(agentry_namespace=f"t{uuid.uuid4().hex}", agentry_partitions=2)
        self.topology = Topology.from_settings(self.settings)
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "MONGODB_URL"},
            "AGENTRY_NAMESPACE": self.settings.agentry_namespace,
            "AGENTRY_PARTITIONS": "2",
            "MEMORY_DATA_DIR": str(data_dir),
            "MEMORY_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # no model: the summaries wait
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen([str(BIN / "agentry-memory")], env=self.env)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "agentry-memory exited"
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("agentry-memory never became ready")

    async def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, 30)
        self.process = None
        return code


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[tuple[MemoryProcess, Bus]]:
    service = MemoryProcess(tmp_path / "data")
    client = Bus(service.settings.amqp_url.get_secret_value(), service.topology, name="memory-test")
    await client.connect()
    try:
        yield service, client
    finally:
        if service.process is not None:
            service.process.kill()
            service.process.wait(10)
        await delete_declared(await client.channel(prefetch=1), service.topology)
        await client.close()


async def rpc(client: Bus, request: BaseModel) -> Any:
    """A shared memory reply, or one of the fact replies (their own union for now)."""
    body = await client.request(client.topology.memory_rpc, encode(request), timeout=10)
    try:
        return MEMORY_REPLY.validate_json(body)
    except ValidationError:
        return FACT_REPLY.validate_json(body)


async def frames(client: Bus, scope: Scope, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        reply = await rpc(client, GetFrames(scope=scope))
        assert isinstance(reply, Frames)
        if len(reply.frames) >= count:
            return reply.frames
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} frames")


async def test_restarting_the_service_loses_nothing(memory: tuple[MemoryProcess, Bus]) -> None:
    service, client = memory
    scope = Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
    log_key = str(service.topology.partition(scope.conversation_id))
    await service.start()

    turn = TurnRequested(scope=scope, turn_id="t1", text="Remember that I prefer tea.", accepted_at=datetime.now(UTC))
    await client.publish(service.topology.log_exchange, log_key, encode(turn))
    await frames(client, scope, 1)
    # attempt 2: memory began it (attempt 1) as it forwarded it to a reasoner, not here.
    assert await rpc(client, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=2, state="running")
    answer = [ChatMessage(role="assistant", content="I'll remember that.")]
    await rpc(client, AppendMessages(scope=scope, turn_id="t1", messages=answer))
    await rpc(client, RecordReasoning(scope=scope, turn_id="t1", step=0, text="[reasoning] a preference"))
    await rpc(client, RememberFact(scope=scope, turn_id="t1", fact="I prefer tea", category="preference"))
    await rpc(client, UpdateTask(scope=scope, task="Brew tea", status="in_progress", progress="kettle on"))
    await rpc(
        client,
        RequestApproval(
            scope=scope, turn_id="t1", call_id="c1", tool="python", arguments={}, expires_at=time.time() + 600
        ),
    )
    decide = DecideApproval(
        tenant_id="acme", user_id="alice", turn_id="t1", call_id="c1", args_sha256=arguments_sha256({}), approved=True
    )
    await rpc(client, decide)
    done = TurnCompleted(conversation_id=scope.conversation_id, turn_id="t1", text="I'll remember that.")
    await client.publish(
        service.topology.log_exchange,
        log_key,
        encode(EventPosted(scope=scope, turn_id="t1", event_id="t1:done", frame=done)),
    )
    before = await frames(client, scope, 2)
    assert await service.stop() == 0

    await service.start()
    assert await frames(client, scope, 2) == before
    context = await rpc(client, GetContext(scope=scope, turn_id="t1"))
    assert isinstance(context, Context)
    assert context.messages[-1].content == "Remember that I prefer tea." and context.produced == answer
    recalled = await rpc(client, RecallFacts(scope=scope, query="tea"))
    assert isinstance(recalled, FactsRecalled) and [f.fact for f in recalled.facts] == ["I prefer tea"]
    tasks = await rpc(client, ListTasks(scope=scope))
    assert isinstance(tasks, TaskList) and [(t.task, t.progress) for t in tasks.tasks] == [("Brew tea", "kettle on")]
    approval = await rpc(client, GetApproval(scope=scope, turn_id="t1", call_id="c1"))
    assert isinstance(approval, Approval) and approval.state == "approved"
    assert await rpc(client, BeginTurn(scope=scope, turn_id="t1")) == TurnBegun(attempt=3, state="completed")
    second = TurnRequested(scope=scope, turn_id="t2", text="and now?", accepted_at=datetime.now(UTC))
    await client.publish(service.topology.log_exchange, log_key, encode(second))
    assert [f["seq"] for f in await frames(client, scope, 3)] == [1, 2, 3]  # seq goes on

    # The operator's command, beside the running service, on the same file.
    audit = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "agentry-memory-admin"), "reasoning", "--tenant", "acme", "--user", "alice", "--turn", "t1"],
        env=service.env,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert audit.returncode == 0, audit.stderr
    assert [json.loads(line)["text"] for line in audit.stdout.decode().splitlines()] == ["[reasoning] a preference"]
    assert b"reasoning read by an operator" in audit.stderr
    assert await service.stop() == 0
