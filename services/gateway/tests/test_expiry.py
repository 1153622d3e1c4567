"""A socket lives as long as its token: closed at exp (4401, a last `token_expired`),
unless a `reauth` frame brings a fresh token for the same user first."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import jwt
import pytest
from agentry_gateway import metrics
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.gateway.tests.conftest import assert_silent, recv_json, send_message

if TYPE_CHECKING:
    from services.gateway.tests.conftest import Broker, StartGateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(sub: str = "erin", tenant: str = "acme", ttl: float = 1.5) -> str:
    return jwt.encode({"sub": sub, "tenant": tenant, "exp": time.time() + ttl}, SECRET, "HS256")


async def hs256_gateway(start_gateway: StartGateway) -> str:
    _, url = await start_gateway(auth_dev_identity=False, auth_jwt_secret=SecretStr(SECRET), auth_jwt_leeway_seconds=0)
    return url


def opened(url: str, tok: str) -> connect:
    return connect(url, additional_headers={"Authorization": f"Bearer {tok}"})


async def expect_expiry_close(ws: ClientConnection, within: float) -> None:
    frame = await recv_json(ws, timeout=within)
    assert (frame["type"], frame["code"]) == ("error", "token_expired")
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 2)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_socket_closes_when_its_token_expires(broker: Broker, start_gateway: StartGateway) -> None:
    url = await hs256_gateway(start_gateway)
    async with opened(url, token(ttl=1.5)) as ws:
        await send_message(ws, "before exp")
        turn = await broker.log.next()
        assert turn.scope.user_id == "erin"
        await expect_expiry_close(ws, within=3)


async def test_reauth_keeps_the_socket_open(broker: Broker, start_gateway: StartGateway) -> None:
    url = await hs256_gateway(start_gateway)
    async with opened(url, token(ttl=1.5)) as ws:
        await ws.send(json.dumps({"type": "reauth", "token": token(ttl=60), "id": "r1"}))
        await assert_silent(ws, 2.5)  # past the first token's exp: no error, still open
        await send_message(ws, "after the first exp")
        assert (await broker.log.next()).text == "after the first exp"


async def test_reauth_refused_keeps_the_old_expiry(broker: Broker, start_gateway: StartGateway) -> None:
    url = await hs256_gateway(start_gateway)
    before = metrics.AUTH_REFUSALS.labels("other_identity")._value.get()
    async with opened(url, token(ttl=2.0)) as ws:
        for bad in (token(sub="mallory", ttl=60), token(tenant="other", ttl=60), "not-a-jwt", token(ttl=-120)):
            await ws.send(json.dumps({"type": "reauth", "token": bad, "id": "r2"}))
            frame = await recv_json(ws)
            assert (frame["code"], frame["id"]) == ("reauth_refused", "r2")
            assert bad not in frame["message"]
        await ws.send(json.dumps({"type": "reauth", "id": "r3"}))
        assert (await recv_json(ws))["code"] == "invalid_reauth"
        await expect_expiry_close(ws, within=3)
    assert metrics.AUTH_REFUSALS.labels("other_identity")._value.get() == before + 2


async def test_reauth_in_development_mode_is_refused(gateway: tuple[object, str]) -> None:
    async with connect(f"{gateway[1]}?user=devon") as ws:
        await ws.send(json.dumps({"type": "reauth", "token": token(ttl=60)}))
        assert (await recv_json(ws))["code"] == "reauth_refused"
