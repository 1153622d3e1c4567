"""Secrets stay secret: with a canary in every secret setting, turns run (the sandboxed
python tool printing its whole environment included) and no canary shows up in any log
line, frame, stored record, metrics page or tool output.

Every service connects with its own broker user (scripts/broker-users.py) whose password
is a canary, which also shows that the restricted users are enough to run the stack.
MONGODB_URL is left out: memory would then need a MongoDB, and none runs here.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect

from tests.client import answer, converse
from tests.stack import Stack, broker_users, delete_broker_users

pytestmark = pytest.mark.e2e

CANARY = f"canary{uuid.uuid4().hex[:10]}"
SECRETS = {
    "AMQP password of gateway": f"{CANARY}amqpgw",
    "AMQP password of reasoner": f"{CANARY}amqprs",
    "AMQP password of memory": f"{CANARY}amqpmem",
    "AMQP password of tool-runner": f"{CANARY}amqptr",
    "AUTH_JWT_SECRET": f"{CANARY}jwtsecret-long-enough-for-hs256",
    "OPENAI_API_KEY": f"{CANARY}openaikey",
}
SERVICES = ("gateway", "reasoner", "memory", "tool-runner")
DUMP_ENVIRONMENT = """run this python:
```python
import os
print(sorted(os.environ.items()))
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            print(pid, open(f'/proc/{pid}/environ', 'rb').read())
        except OSError as exc:
            print(pid, exc)
```"""


@pytest.fixture(scope="module")
def canary_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = Path(tmp_path_factory.mktemp("secrets"))
    stack = Stack(workdir, AUTH_JWT_SECRET=SECRETS["AUTH_JWT_SECRET"], OPENAI_API_KEY=SECRETS["OPENAI_API_KEY"])
    env_file = workdir / "users.env"
    # Passwords already in the file are kept: the canaries become the users' passwords.
    env_file.write_text(
        "".join(
            f"AMQP_URL_{name.upper().replace('-', '_')}=amqp://u:{SECRETS[f'AMQP password of {name}']}@127.0.0.1/\n"
            for name in SERVICES
        )
    )
    try:
        urls = broker_users(stack.namespace, env_file)
        stack.per_service = {name: {"AMQP_URL": url} for name, url in urls.items()}
        stack.start_all()
        yield stack
    finally:
        stack.close()
        delete_broker_users(stack.namespace)


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in SECRETS.items() if value.encode() in data]


async def test_no_secret_leaves_its_setting(canary_stack: Stack) -> None:
    stack = canary_stack
    token = jwt.encode({"sub": "alice"}, SECRETS["AUTH_JWT_SECRET"], algorithm="HS256")
    async with connect(stack.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        dumped = await converse(ws, DUMP_ENVIRONMENT)
        calculated = await converse(ws, "What is 37*91?")
        remembered = await converse(ws, "Remember that I prefer tea.")
    frames: list[dict[str, Any]] = [*dumped, *calculated, *remembered]
    assert "PATH" in answer(dumped), answer(dumped)  # the tool ran and printed its environment
    assert "3367" in answer(calculated)

    found: dict[str, list[str]] = {}
    found["frames"] = leaks(repr(frames))
    for log in stack.workdir.glob("*.log"):
        found[log.name] = leaks(log.read_bytes())
    for stored in (stack.workdir / "memory").rglob("*"):
        if stored.is_file():
            found[str(stored)] = leaks(stored.read_bytes())
    for name in SERVICES:
        for path in ("/metrics", "/healthz", "/readyz"):
            with urllib.request.urlopen(stack.http(name, path), timeout=5) as reply:
                found[f"{name}{path}"] = leaks(reply.read())
    assert {where: names for where, names in found.items() if names} == {}
    assert sum(1 for _ in stack.workdir.glob("*.log")) >= len(SERVICES)
