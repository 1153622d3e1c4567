"""The installed console script as a real process: serves, answers probes, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from agentry_gateway.server import Gateway

    from services.gateway.tests.conftest import Broker

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCRIPT = Path(sys.executable).with_name("agentry-gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(base: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            assert process.returncode is None, "gateway exited during start-up"
            try:
                async with http.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("gateway never became ready")


def gateway_env(broker: Broker, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "AGENTRY_NAMESPACE": broker.topology.namespace,
        "AGENTRY_PARTITIONS": str(broker.topology.partitions),
        "GATEWAY_PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": "5",
        "AUTH_DEV_IDENTITY": "true",
    }
    env.pop("AUTH_JWT_SECRET", None)
    return env


@pytest.mark.skipif(not SCRIPT.exists(), reason="agentry-gateway is not installed in this environment")
async def test_console_script_serves_and_stops_on_sigterm(broker: Broker) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), env=gateway_env(broker, port), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", process)
        async with connect(f"ws://127.0.0.1:{port}/ws?user=proc") as ws:
            await ws.send(json.dumps({"type": "message", "text": "through the real process", "id": "p1"}))
            turn = await broker.log.next()
            assert (turn.text, turn.scope.user_id, turn.client_message_id) == ("through the real process", "proc", "p1")
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    lines = [json.loads(line) for line in (await process.stderr.read()).decode().splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert f"serving ws://127.0.0.1:{port}/ws" in messages
    warning = next(line for line in lines if line["msg"].startswith("AUTH_DEV_IDENTITY=true"))
    assert warning["level"] == "warning" and "no authentication" in warning["msg"]
    published = next(line for line in lines if line["msg"] == "turn published")
    assert published["turn_id"] == turn.turn_id and published["conversation_id"] == turn.scope.conversation_id


@pytest.mark.skipif(not SCRIPT.exists(), reason="agentry-gateway is not installed in this environment")
@pytest.mark.parametrize("dev_identity", ["true", "false"])
async def test_empty_secret_refuses_to_start(broker: Broker, dev_identity: str) -> None:
    """A Kubernetes Secret whose key exists but is empty: the process exits, naming the variable."""
    env = {**gateway_env(broker, free_port()), "AUTH_JWT_SECRET": "", "AUTH_DEV_IDENTITY": dev_identity}
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode != 0
    assert b"AUTH_JWT_SECRET is set but empty" in stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="agentry-gateway is not installed in this environment")
async def test_resume_on_another_gateway_process(broker: Broker, gateway: tuple[Gateway, str]) -> None:
    """The client follows a conversation on one gateway, loses it, and resumes on another
    replica (a separate process): everything it missed, then live, nothing twice."""
    async with connect(f"{gateway[1]}?user=vera") as ws:
        await ws.send(json.dumps({"type": "message", "text": "start", "id": "v1"}))
        conversation = (await broker.log.next()).scope.conversation_id
        for seq in (1, 2):
            await broker.send_frame(conversation, seq)
        assert [json.loads(await asyncio.wait_for(ws.recv(), 5))["seq"] for _ in range(2)] == [1, 2]
    for seq in (3, 4):  # while the client is away
        await broker.send_frame(conversation, seq)

    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), env=gateway_env(broker, port), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", process)
        async with connect(f"ws://127.0.0.1:{port}/ws?user=vera") as ws:
            await ws.send(json.dumps({"type": "resume", "conversation_id": conversation, "after_seq": 2}))
            replayed = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
            assert [(f["seq"], f["conversation_id"]) for f in replayed] == [(3, conversation), (4, conversation)]
            await broker.send_frame(conversation, 4)  # a redelivery of the last replayed one
            await broker.send_frame(conversation, 5)
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["seq"] == 5
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
