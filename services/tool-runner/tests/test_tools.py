"""The built-in tools' implementations, called directly (no child, no sandbox): their
rules, caps and results. test_sandbox.py and test_escape.py run them in the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentry_tool_runner.execution.resources import SAMPLE_DOCS, allowlist, folder_name
from agentry_tool_runner.tools.builtin import (
    _paths,
    _text,
    http_fetch,
    python,
    search_docs,
    workspace_read,
    workspace_write,
)
from agentry_tool_runner.tools.failure import ToolDenied, ToolFailure
from agentry_tool_runner.tools.registry import REGISTRY
from aiohttp import web
from pydantic import ValidationError


def test_clip_and_fit() -> None:
    assert _text.clip(b"hello", 10) == "hello"
    assert _text.clip(b"hello world", 5) == "hello…[truncated 6 bytes]"
    assert _text.clip("é".encode() * 3, 3, 6) == "é…[truncated 3 bytes]"  # never half a character
    fitted = json.loads(_text.fit(lambda cap: {"s": "\x00" * cap}, 1000, 600))
    assert len(json.dumps(fitted, ensure_ascii=False).encode()) <= 600


@pytest.mark.parametrize(
    ("path", "normal"), [("a.txt", "a.txt"), ("a//b/./c.md", "a/b/c.md"), (".", "."), ("", "."), ("x/", "x")]
)
def test_relative_paths(path: str, normal: str) -> None:
    assert _paths.relative_path(path) == normal


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a/..", "a\\b", "a\x00b", "a/" * 20 + "b"])
def test_paths_that_leave_the_workspace_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        _paths.relative_path(path)
    tool = REGISTRY.get("workspace_read")
    assert tool is not None
    with pytest.raises(ValidationError):  # the worker refuses them before any process starts
        tool.validate_arguments({"path": path})


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s3cret")
    workspace = tmp_path / "ws"
    (workspace / "real").mkdir(parents=True)
    (workspace / "real" / "ok.txt").write_text("fine")
    (workspace / "link").symlink_to(tmp_path / "outside")
    (workspace / "inner").symlink_to(workspace / "real")  # inside, but still a link
    assert json.loads(workspace_read.run("real/ok.txt", str(workspace)))["content"] == "fine"
    for path in ("link/secret", "inner/ok.txt", "link"):
        with pytest.raises(ToolDenied):
            workspace_read.run(path, str(workspace))
    with pytest.raises(ToolDenied):
        workspace_write.run("link/new.txt", "x", str(workspace))
    assert not (tmp_path / "outside" / "new.txt").exists()


def test_write_read_list_and_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = str(tmp_path)
    assert json.loads(workspace_write.run("notes/todo.md", "buy milk", ws)) == {
        "path": "notes/todo.md",
        "bytes": 8,
        "replaced": False,
    }
    assert json.loads(workspace_write.run("notes/todo.md", "buy bread", ws))["replaced"] is True
    assert json.loads(workspace_read.run("notes/todo.md", ws))["content"] == "buy bread"
    listing = json.loads(workspace_read.run(".", ws))
    assert listing["entries"] == [{"name": "notes", "type": "folder", "size": listing["entries"][0]["size"]}]
    assert not [name for name in os.listdir(tmp_path / "notes") if name.startswith(".write-")]
    with pytest.raises(ToolFailure, match="folder"):
        workspace_write.run("notes", "x", ws)
    with pytest.raises(ToolFailure, match="no such file"):
        workspace_read.run("missing.txt", ws)
    monkeypatch.setattr(workspace_write, "QUOTA_BYTES", 20)
    with pytest.raises(ToolFailure, match="quota"):
        workspace_write.run("big.txt", "x" * 30, ws)
    (tmp_path / "large.txt").write_bytes(b"y" * (workspace_read.READ_CAP + 10))
    assert json.loads(workspace_read.run("large.txt", ws))["content"].endswith("…[truncated 10 bytes]")


def test_python_returns_streams_and_exit_code(tmp_path: Path) -> None:
    result = json.loads(python.run("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"))
    assert result == {"stdout": "out\n", "stderr": "err\n", "exit_code": 3}
    (tmp_path / "data.txt").write_text("42")
    assert json.loads(python.run("print(open('data.txt').read())", str(tmp_path)))["stdout"] == "42\n"


def test_python_caps_each_stream() -> None:
    result = json.loads(python.run("print('x' * 100_000)"))
    assert result["stdout"] == "x" * python.STREAM_CAP + f"…[truncated {100_001 - python.STREAM_CAP} bytes]"
    escaped = python.run("import sys; sys.stdout.write(chr(0) * 100_000)")  # six bytes each in JSON
    assert len(escaped.encode()) <= python.OUTPUT_LIMIT


def test_python_does_not_wait_for_what_the_program_left_behind() -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(3)\nprint('parent done')"
    started = time.monotonic()
    result = json.loads(python.run(code))  # its child holds the pipes for 3 s
    assert time.monotonic() - started < 2  # not a shorter wait for them either
    assert (result["stdout"], result["exit_code"]) == ("parent done\n", 0)


def test_search_docs_ranks_the_sample_corpus() -> None:
    result = json.loads(search_docs.run("rate limits per second", str(SAMPLE_DOCS)))
    assert result["results"][0]["path"] == "rate-limits.md"
    assert "**" in result["results"][0]["snippet"]
    assert result["searched_files"] >= 5
    assert json.loads(search_docs.run("zebra quux", str(SAMPLE_DOCS)))["results"] == []
    with pytest.raises(ToolFailure):
        search_docs.run("?!", str(SAMPLE_DOCS))
    quoted = json.loads(search_docs.run('sandbox" OR "x', str(SAMPLE_DOCS)))  # no FTS syntax injection
    assert quoted["results"]


def test_scope_ids_become_safe_folder_names() -> None:
    assert folder_name("user-1@example.com") == "user-1@example.com"
    assert folder_name("..").startswith("~") and folder_name(".hidden").startswith("~")
    assert allowlist(" Example.COM, ,localhost.") == ("example.com", "localhost")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A tiny web server on 127.0.0.1: a page, redirects, a large body."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<h1>hello from the test site</h1>", content_type="text/html")

    async def same(_: web.Request) -> web.Response:
        raise web.HTTPFound("/page")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/page")

    async def large(_: web.Request) -> web.Response:
        return web.Response(text="z" * 100_000, content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/page", page), web.get("/same", same), web.get("/away", elsewhere)])
    app.add_routes([web.get("/large", large)])
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_http_fetch_checks_every_hop(site: str) -> None:
    hosts = ["127.0.0.1"]
    page = json.loads(await asyncio.to_thread(http_fetch.run, f"{site}/page", hosts))
    assert (page["status"], page["body"]) == (200, "<h1>hello from the test site</h1>")
    followed = json.loads(await asyncio.to_thread(http_fetch.run, f"{site}/same", hosts))
    assert followed["url"] == f"{site}/page" and followed["status"] == 200
    with pytest.raises(ToolDenied, match="localhost is not on"):
        await asyncio.to_thread(http_fetch.run, f"{site}/away", hosts)
    with pytest.raises(ToolDenied):
        await asyncio.to_thread(http_fetch.run, f"{site}/page", [])
    large = json.loads(await asyncio.to_thread(http_fetch.run, f"{site}/large", hosts))
    assert large["body"].endswith(f"…[truncated {100_000 - http_fetch.BODY_CAP} bytes]")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "127.0.0.1"])
def test_http_fetch_refuses_other_urls(url: str) -> None:
    tool = REGISTRY.get("http_fetch")
    assert tool is not None
    with pytest.raises(ValidationError):
        tool.validate_arguments({"url": url})
