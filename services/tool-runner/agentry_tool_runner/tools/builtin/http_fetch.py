"""GETs a web page from a host on the operator's allowlist.

Runs in the sandbox with the host's network (its policy is `allowlist`) and nothing else
of the host: the hosts come from TOOL_RUNNER_HTTP_ALLOWLIST (exact names, any port, or
addresses and networks; empty: every fetch is refused before a process starts). Every
address a name resolves to must be public unless the operator lists it (`_addresses.py`),
and the connection goes to that checked address, the name kept for Host and TLS. Redirects
are followed by hand, at most five, each target checked like the first URL. The body is
read up to 64 KiB; each socket operation times out after a few seconds.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from urllib.parse import urljoin, urlsplit

from agentry_tool_runner.tools.builtin._addresses import Policy
from agentry_tool_runner.tools.builtin._text import clip, fit
from agentry_tool_runner.tools.failure import ToolDenied, ToolFailure, in_worker

MAX_URL_CHARS = 2048
BODY_CAP = 64 * 1024
COUNT_LIMIT = 1024 * 1024  # without a Content-Length, bytes past the cap are counted up to this
OUTPUT_LIMIT = 96 * 1024
MAX_REDIRECTS = 5
SOCKET_TIMEOUT = 5.0
_REDIRECTS = {301, 302, 303, 307, 308}
_TEXT = re.compile(r"^(text/|application/(json|xml|xhtml\+xml|javascript)|[^;]*\+(json|xml))", re.IGNORECASE)


def check_url(url: str) -> str:
    """http(s), a host, no credentials; ValueError otherwise (the worker's check, and ours)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise ValueError("the URL may not carry a user name or password")
    return url


def run(url: str, allowed_hosts: list[str]) -> str:
    policy = Policy.parse(allowed_hosts)
    for _ in range(MAX_REDIRECTS + 1):
        response, connection = _get(url, policy)
        try:
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            return _describe(url, response)
        finally:
            connection.close()
    raise ToolFailure(f"more than {MAX_REDIRECTS} redirects")


def _get(url: str, policy: Policy) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    try:
        check_url(url)
    except ValueError as exc:
        raise ToolDenied(f"{url[:200]}: {exc}") from None
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not policy.host_allowed(host):
        raise ToolDenied(f"{host} is not on this worker's allowlist of hosts (TOOL_RUNNER_HTTP_ALLOWLIST)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = policy.resolve(host, port)
    except PermissionError as exc:
        raise ToolDenied(str(exc)) from None
    except OSError as exc:
        raise ToolFailure(f"could not resolve {host}: {exc}") from None
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=SOCKET_TIMEOUT)
    connection._create_connection = _pinned(address)  # type: ignore[attr-defined]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": "agentry-http-fetch/1", "Accept-Encoding": "identity"}
    try:
        connection.request("GET", target, headers=headers)
        return connection.getresponse(), connection
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise ToolFailure(f"could not fetch {host}: {type(exc).__name__}: {exc}") from None


def _pinned(address: str) -> object:
    """http.client's connect hook, sent to the checked address: the name still goes into
    the Host header and TLS (SNI and certificate check), but is not looked up again."""

    def create_connection(
        destination: tuple[str, int], timeout: float, source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        return socket.create_connection((address, destination[1]), timeout, source_address)

    return create_connection


def _describe(url: str, response: http.client.HTTPResponse) -> str:
    content_type = response.getheader("Content-Type") or ""
    try:
        data = response.read(BODY_CAP)
        seen = len(data)
        length = response.getheader("Content-Length")
        if length and length.isdigit():
            seen = max(seen, int(length))
        else:  # no length given: count what follows, up to a point
            while seen < COUNT_LIMIT and (chunk := response.read(64 * 1024)):
                seen += len(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise ToolFailure(f"the response broke off: {type(exc).__name__}: {exc}") from None
    if content_type and not _TEXT.match(content_type):
        body = f"[{content_type} content, not shown]"
        return json.dumps({"url": url, "status": response.status, "content_type": content_type, "body": body})

    def build(cap: int) -> dict[str, object]:
        text = clip(data[:cap], cap, seen)
        return {"url": url, "status": response.status, "content_type": content_type, "body": text}

    return fit(build, BODY_CAP, OUTPUT_LIMIT)


if in_worker():  # the declaration; the child (no pydantic in the sandbox) skips it
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field

    from agentry_tool_runner.tools.tool import Limits, Tool

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        url: Annotated[str, AfterValidator(check_url)] = Field(
            max_length=MAX_URL_CHARS, description="The http:// or https:// URL to GET."
        )

    TOOL = Tool(
        name="http_fetch",
        description=(
            "Fetches a web page with GET and returns JSON {url, status, content_type, body}, the body cut at "
            "64 KiB. Only hosts on the operator's allowlist can be fetched; others are refused."
        ),
        params=Params,
        implementation=f"{__name__}:run",
        side_effect="read_only",
        pool="network",
        timeout_seconds=15.0,
        limits=Limits(cpu_seconds=5, memory_mib=256, max_output_bytes=OUTPUT_LIMIT),
        network="allowlist",
    )
