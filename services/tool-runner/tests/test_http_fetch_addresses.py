"""http_fetch's address policy: an allowlisted name must not lead to an internal address,
and the connection goes to the address that was checked (no second, different lookup)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agentry_tool_runner.tools.builtin import http_fetch
from agentry_tool_runner.tools.builtin._addresses import Policy, why_internal
from agentry_tool_runner.tools.failure import ToolDenied
from aiohttp import web


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation (TEST-NET-1): not routable either
        ("2001:db8::1", "reserved"),
    ],
)
def test_internal_addresses_are_classified(address: str, reason: str) -> None:
    found = why_internal(ipaddress.ip_address(address))
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert why_internal(ipaddress.ip_address(address)) is None


def test_policy_splits_names_from_addresses() -> None:
    policy = Policy.parse(["example.com", "127.0.0.1", "10.1.0.0/16", "::1"])
    assert policy.names == {"example.com"}
    assert policy.host_allowed("example.com") and policy.host_allowed("10.1.200.3") and policy.host_allowed("::1")
    assert not policy.host_allowed("10.2.0.1") and not policy.host_allowed("other.example.com")
    assert policy.listed(ipaddress.ip_address("::ffff:127.0.0.1"))  # the mapped form of a listed one


@pytest.fixture
async def site() -> AsyncIterator[int]:
    """A web server on 127.0.0.1 that echoes the Host header, and redirects to metadata.test."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"host={request.host}", content_type="text/plain")

    async def to_metadata(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://metadata.test:{request.url.port}/page")

    app = web.Application()
    app.add_routes([web.get("/page", page), web.get("/to-metadata", to_metadata)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def fetch(url: str, hosts: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await asyncio.to_thread(http_fetch.run, url, hosts))
    return result


async def test_an_allowlisted_name_pointing_at_loopback_is_refused(site: int) -> None:
    with pytest.raises(ToolDenied, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback address"):
        await fetch(f"http://localhost:{site}/page", ["localhost"])


async def test_a_listed_address_is_reached(site: int) -> None:
    page = await fetch(f"http://127.0.0.1:{site}/page", ["127.0.0.1"])
    assert page["body"] == f"host=127.0.0.1:{site}"
    # The operator lists the address, so the name that points at it works too.
    named = await fetch(f"http://localhost:{site}/page", ["localhost", "127.0.0.1", "::1"])
    assert named["body"] == f"host=localhost:{site}"


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> None:
    """`name` resolves to each of `answers` in turn (the last one from then on)."""
    real = socket.getaddrinfo
    queue = list(answers)

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            host = queue.pop(0) if len(queue) > 1 else queue[0]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


async def test_a_redirect_to_an_internal_address_is_refused(site: int, monkeypatch: pytest.MonkeyPatch) -> None:
    resolving(monkeypatch, "metadata.test", "169.254.169.254")
    with pytest.raises(ToolDenied, match=r"metadata.test resolves to 169.254.169.254, a link-local"):
        await fetch(f"http://127.0.0.1:{site}/to-metadata", ["127.0.0.1", "metadata.test"])


async def test_the_checked_address_is_the_one_connected_to(site: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the first answer is checked, a later one would point elsewhere."""
    resolving(monkeypatch, "rebind.test", "127.0.0.1", "192.0.2.1")
    page = await fetch(f"http://rebind.test:{site}/page", ["rebind.test", "127.0.0.1"])
    assert page["body"] == f"host=rebind.test:{site}"
