"""Tools end to end: the sandboxed python tool, and approval of destructive calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.client import answer, converse, next_frame, send, until_turn_ends
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def test_python_runs_in_the_sandbox_and_its_output_reaches_the_answer(stack: Stack) -> None:
    async with connect(stack.ws_url) as ws:
        frames = await converse(ws, "run this python:\n```python\nprint(6*7)\n```")
    started = [f for f in frames if f["type"] == "tool.started"]
    assert [f["tool"] for f in started] == ["python"]
    assert "42" in answer(frames)


async def _ask_to_write(ws: ClientConnection, path: str) -> list[dict[str, Any]]:
    await send(ws, {"type": "message", "text": f'save "hello from agentry" to {path}'})
    frames = []
    while (frame := await next_frame(ws))["type"] != "tool.approval_required":
        frames.append(frame)
        assert frame["type"] not in ("turn.completed", "turn.failed"), frames
    frames.append(frame)
    return frames


async def test_destructive_tool_runs_only_after_approval(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=writer") as ws:
        frames = await _ask_to_write(ws, "notes.txt")
        required = frames[-1]
        assert required["tool"] == "workspace_write"
        assert required["arguments"] == {"path": "notes.txt", "content": "hello from agentry"}
        assert not any(f["type"] == "tool.started" for f in frames)  # nothing ran yet
        await send(ws, {"type": "approve", "call_id": required["call_id"], "approved": True})
        rest = await until_turn_ends(ws)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [True], rest[-1]
        conversation = required["conversation_id"]
        read_back = await converse(ws, "read notes.txt", conversation_id=conversation)
        assert "hello from agentry" in answer(read_back)


async def test_denied_destructive_call_does_not_run(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=denier") as ws:
        required = (await _ask_to_write(ws, "denied.txt"))[-1]
        await send(ws, {"type": "approve", "call_id": required["call_id"], "approved": False})
        rest = await until_turn_ends(ws)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [False]
        assert rest[-1]["type"] == "turn.completed"
        reread = await converse(ws, "read denied.txt", conversation_id=required["conversation_id"])
        assert "hello from agentry" not in answer(reread)


@pytest.fixture(scope="module")
def impatient_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("impatient")), REASONER_APPROVAL_TIMEOUT_SECONDS="1.5")
    try:
        s.start_all()
        yield s
    finally:
        s.close()


async def test_unanswered_approval_means_denied_and_a_late_answer_is_refused(impatient_stack: Stack) -> None:
    async with connect(impatient_stack.ws_url) as ws:
        required = (await _ask_to_write(ws, "late.txt"))[-1]
        assert required["expires_in_ms"] == 1500
        rest = await until_turn_ends(ws)  # nobody answers
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [False]
        assert rest[-1]["type"] == "turn.completed"
        await send(ws, {"type": "approve", "call_id": required["call_id"], "approved": True})
        late = await next_frame(ws)
        assert late["type"] == "error" and late["code"] == "approval_expired"
