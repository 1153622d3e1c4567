"""The web chat page: served from package data at /, with its security headers."""

from __future__ import annotations

import aiohttp
from agentry_gateway.server import Gateway
from agentry_gateway.webpage import PAGES, policy


async def test_the_page_and_its_files_are_served_with_a_strict_policy(gateway: tuple[Gateway, str]) -> None:
    base = gateway[1].replace("ws://", "http://").removesuffix("/ws")
    host = base.removeprefix("http://")
    async with aiohttp.ClientSession() as http:
        for path, (_name, content_type) in PAGES.items():
            async with http.get(f"{base}{path}?user=alice") as r:
                assert r.status == 200, path
                assert r.headers["Content-Type"] == content_type
                csp = r.headers["Content-Security-Policy"]
                assert "default-src 'self'" in csp and f"connect-src 'self' ws://{host} wss://{host}" in csp
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["X-Frame-Options"] == "DENY"
        async with http.get(f"{base}/") as r:
            html = await r.text()
    assert '<script src="/app.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html and "http" not in html  # nothing inline, no CDN


def test_a_host_header_that_is_no_host_is_left_out_of_the_policy() -> None:
    assert "ws://" not in policy("evil.example; script-src *")
    assert "ws://" not in policy(None)
    assert "ws://[::1]:8080 " in policy("[::1]:8080")
