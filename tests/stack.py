"""Starts Agentry's services as real processes for cross-service tests.

Each stack gets its own namespace (exchange and queue prefix), ports and data directory,
so test runs never see each other or what an earlier run left in the broker. Processes
are ended by the PIDs started here, and the namespace's queues are deleted at the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PORT_VARS = {
    "gateway": "GATEWAY_PORT",
    "reasoner": "REASONER_PORT",
    "tool-runner": "TOOL_RUNNER_PORT",
    "memory": "MEMORY_PORT",
    "offline-model": "OFFLINE_MODEL_PORT",
}
# Start order: what others call first.
ORDER = ["offline-model", "memory", "tool-runner", "reasoner", "gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Each socket stays bound until all are picked: one
    `free_port` after another may get the same port twice (it is free again once closed),
    and two services given one port left the stack a replica short (the second failed to
    bind, and the other's /readyz answered for it)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Proc:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None


@functools.cache
def broker_users_script() -> Any:
    """scripts/broker-users.py as a module (its name has a dash: not importable by name)."""
    spec = importlib.util.spec_from_file_location("broker_users", ROOT / "scripts" / "broker-users.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broker_users(namespace: str, env_file: Path) -> dict[str, str]:
    """Creates the namespace's per-service broker users (scripts/broker-users.py; passwords
    already in `env_file` are kept) and returns each service's AMQP_URL by service name."""
    script = ROOT / "scripts" / "broker-users.py"
    subprocess.run(
        [sys.executable, str(script), "ensure", "--namespace", namespace, "--env-file", str(env_file)],
        check=True,
        env={**os.environ, "AMQP_URL": AMQP_URL},
        capture_output=True,
    )
    urls = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line.startswith("AMQP_URL_"))
    return {name: urls[f"AMQP_URL_{name.upper().replace('-', '_')}"] for name in PORT_VARS if name != "offline-model"}


def delete_broker_users(namespace: str) -> None:
    script = ROOT / "scripts" / "broker-users.py"
    subprocess.run([sys.executable, str(script), "delete", "--namespace", namespace], check=True, capture_output=True)


class Stack:
    def __init__(self, workdir: Path, *, per_service: dict[str, dict[str, str]] | None = None, **env: str) -> None:
        # Settings for one service only (its own AMQP_URL, say), over `env`.
        self.per_service = per_service or {}
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self.workdir = workdir
        self.ports = dict(zip(PORT_VARS, free_ports(len(PORT_VARS)), strict=True))
        self.procs: list[Proc] = []
        self.env = {
            "AMQP_URL": AMQP_URL,
            "AGENTRY_NAMESPACE": self.namespace,
            "AGENTRY_PARTITIONS": "4",
            "MEMORY_DATA_DIR": str(workdir / "memory"),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.ports['offline-model']}/v1",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "OFFLINE_MODEL_CHUNK_DELAY_MS": "1",
            # Clients in these tests say who they are with ?user=; no tokens.
            "AUTH_DEV_IDENTITY": "true",
            **{var: str(self.ports[name]) for name, var in PORT_VARS.items()},
            **env,
        }

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['gateway']}/ws"

    def http(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def start(self, name: str, port: int | None = None, **env: str) -> Proc:
        port = port or self.ports[name]
        log_path = self.workdir / f"{name}-{port}.log"
        full_env = {**os.environ, **self.env, **self.per_service.get(name, {}), PORT_VARS[name]: str(port), **env}
        with log_path.open("ab") as log:
            process = subprocess.Popen([str(BIN / f"agentry-{name}")], env=full_env, stdout=log, stderr=log)
        proc = Proc(name, port, process, log_path)
        self.procs.append(proc)
        return proc

    def wait_ready(self, proc: Proc, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{proc.name} not ready in {timeout}s:\n{proc.log_path.read_text()}")

    def start_all(self) -> None:
        """Every service at once (each waits for what it needs, as in production), then
        each ready: about half the time of one after another on 2 cores."""
        for proc in [self.start(name) for name in ORDER]:
            self.wait_ready(proc)

    def terminate(self, proc: Proc, timeout: float = 15.0) -> int:
        if proc.alive():
            proc.process.send_signal(signal.SIGTERM)
        try:
            return proc.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            return proc.process.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.terminate(proc)
        # A thread of its own: close() is also called from async tests, inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, delete_namespace(self.namespace, int(self.env["AGENTRY_PARTITIONS"]))).result()

    def replicas(self, name: str) -> list[Proc]:
        """The live processes of one service."""
        return [p for p in self.procs if p.name == name and p.alive()]


async def delete_namespace(namespace: str, partitions: int, pools: tuple[str, ...] = ()) -> None:
    """Drop every queue and exchange this stack's namespace created (`pools`: tool pools
    declared besides the registry's)."""
    from agentry_shared.topology import Topology
    from agentry_tool_runner.tools.registry import REGISTRY

    topology = Topology(namespace, partitions)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for name in topology.durable_queues(pools=[*REGISTRY.pools(), *pools]):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)
        channel = await connection.channel()
        for name in topology.exchanges():
            await channel.exchange_delete(name)
