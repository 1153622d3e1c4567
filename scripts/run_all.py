"""`make run`: starts every Agentry service as its own process and supervises them.

A service that dies is restarted (with a growing pause if it keeps dying) while the others
keep running; Ctrl-C or SIGTERM stops them all with SIGTERM, then SIGKILL after a grace
period. Each service reads its settings from the environment, as in production.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from agentry_shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GRACE_S = 25.0
# Restart pauses: doubling from FIRST_PAUSE_S for crashes in a row, up to MAX_PAUSE_S. A
# process that stayed up STABLE_S was not crash-looping: its count starts again from zero.
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 30.0
STABLE_S = 30.0
# Exit status of a service that cannot take its port (agentry_shared.lifecycle): restarting
# cannot help until the setting is changed.
EXIT_PORT_IN_USE = 78


def restart_pause(crashes_in_a_row: int, uptime: float) -> tuple[float, int]:
    """(seconds to wait before restarting, crashes in a row counting this one)."""
    if uptime >= STABLE_S:
        crashes_in_a_row = 0
    return min(MAX_PAUSE_S, FIRST_PAUSE_S * 2 ** min(crashes_in_a_row, 6)), crashes_in_a_row + 1


@dataclass
class Service:
    name: str
    port_var: str
    default_port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    @property
    def port(self) -> int:
        return int(os.environ.get(self.port_var, self.default_port))

    def start(self) -> None:
        # Own session: Ctrl-C reaches the supervisor only, which stops services in order.
        env = {**os.environ, **own_broker_user(self.name)}
        self.process = subprocess.Popen([str(BIN / f"agentry-{self.name}")], cwd=ROOT, env=env, start_new_session=True)
        self.started_at = time.monotonic()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False


BROKER_USERS = ROOT / "data" / "broker-users.env"  # written by scripts/broker-users.py (make run)
DEFAULT_NAMESPACE: str = CommonSettings.model_fields["agentry_namespace"].default


def own_broker_user(name: str, path: Path = BROKER_USERS) -> dict[str, str]:
    """{"AMQP_URL": this service's own broker user} when `make run` made them for the
    namespace this runs (AGENTRY_NAMESPACE), else nothing: another namespace's users are
    refused this one's queues, and every service would crash-loop on ACCESS_REFUSED."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    header = re.search(r"broker users of namespace (\S+)", lines[0] if lines else "")
    made_for = values.get("AGENTRY_NAMESPACE") or (header.group(1) if header else None)
    if made_for != (os.environ.get("AGENTRY_NAMESPACE") or DEFAULT_NAMESPACE):
        return {}
    url = values.get("AMQP_URL_" + name.upper().replace("-", "_"))
    return {"AMQP_URL": url} if url else {}


SERVICES = [
    Service("offline-model", "OFFLINE_MODEL_PORT", 8090),
    Service("memory", "MEMORY_PORT", 8083),
    Service("tool-runner", "TOOL_RUNNER_PORT", 8082),
    Service("reasoner", "REASONER_PORT", 8081),
    Service("gateway", "GATEWAY_PORT", 8080),
]


def stop_all(services: list[Service]) -> None:
    running = [s for s in services if s.process is not None and s.process.poll() is None]
    for s in reversed(running):
        assert s.process is not None
        s.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for s in running:
        assert s.process is not None
        try:
            s.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[run] {s.name} did not stop within {GRACE_S:.0f}s; killing it", flush=True)
            s.process.kill()
            s.process.wait()


def supervise(services: list[Service], stopping: list[bool]) -> None:
    announced = False
    while not stopping:
        now = time.monotonic()
        for s in services:
            if s.process is not None and s.process.poll() is not None:
                code = s.process.returncode
                if code == EXIT_PORT_IN_USE:
                    print(f"[run] {s.name} cannot take its port ({s.port_var}): not restarting it", flush=True)
                    s.process, s.next_start = None, float("inf")
                    continue
                # A process that lived a while gets restarted at once; a crash loop backs off.
                pause, s.restarts = restart_pause(s.restarts, now - s.started_at)
                print(f"[run] {s.name} exited with {code}; restarting in {pause:.1f}s", flush=True)
                s.process, s.next_start = None, now + pause
            if s.process is None and now >= s.next_start:
                s.start()
        if not announced and all(s.ready() for s in services):
            announced = True
            gateway = services[-1]
            print(
                f"\n[run] Agentry is up. Connect a WebSocket client to ws://127.0.0.1:{gateway.port}/ws\n"
                f"[run] chat in a browser: http://127.0.0.1:{gateway.port}/  "
                f"OpenAI-compatible: http://127.0.0.1:{gateway.port}/v1\n"
                f"[run] health: http://127.0.0.1:{gateway.port}/healthz  metrics: http://127.0.0.1:{gateway.port}/metrics\n"
                "[run] Ctrl-C stops every service.\n",
                flush=True,
            )
        time.sleep(0.5)


def main() -> None:
    stopping: list[bool] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # `make run` is for development on this machine: clients say who they are with ?user=
    # (the gateway logs a warning). Export AUTH_JWT_SECRET to require tokens instead.
    os.environ.setdefault("AUTH_DEV_IDENTITY", "true")
    for s in SERVICES:
        s.start()
    try:
        supervise(SERVICES, stopping)
    finally:
        print("[run] stopping every service...", flush=True)
        stop_all(SERVICES)
        print("[run] stopped.", flush=True)


if __name__ == "__main__":
    main()
