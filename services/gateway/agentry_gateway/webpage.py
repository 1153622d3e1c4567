"""The web chat page (`web/`: index.html, app.js, style.css), served at `/` from package data.

Static files, no build step and nothing from a CDN, so the page works offline. Every answer
carries a Content-Security-Policy that allows scripts, styles and connections from this
origin only (and its WebSocket): no inline script can run, so text that reaches the page
from a frame can never become code (app.js also renders it with textContent only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

# path -> (file in web/, content type)
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# A Host header we are willing to repeat in the policy (host, IPv4, [IPv6], optional port).
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@cache
def _body(name: str) -> bytes:
    return (files("agentry_gateway") / "web" / name).read_bytes()


def policy(host: str | None) -> str:
    """The page's CSP; connect-src names this host's ws: and wss: URLs (a bare 'self' does
    not cover WebSocket schemes in every browser)."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str
    headers: list[tuple[str, str]]


def page(path: str, host: str | None) -> Page | None:
    """The page's file at `path` (without the query) for a request to `host`, or None for
    any other path."""
    found = PAGES.get(path)
    if found is None:
        return None
    name, content_type = found
    headers = [
        ("Content-Security-Policy", policy(host)),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    return Page(_body(name), content_type, headers)
