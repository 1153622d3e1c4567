"""Tools end to end: the sandboxed python tool, and approval of destructive calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentry_shared.contracts.frames import arguments_sha256
from websockets.asyncio.client import ClientConnection, connect

from tests.client import answer, approve, converse, next_frame, send, until_turn_ends
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
        assert required["args_sha256"] == arguments_sha256(required["arguments"])
        await approve(ws, required, True)
        rest = await until_turn_ends(ws)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [True], rest[-1]
        assert not [f for f in rest if f["type"] == "tool.finished" and ({"error", "retry_after_ms"} & f.keys())]
        conversation = required["conversation_id"]
        read_back = await converse(ws, "read notes.txt", conversation_id=conversation)
        assert "hello from agentry" in answer(read_back)


async def test_denied_destructive_call_does_not_run(stack: Stack) -> None:
    async with connect(stack.ws_url + "?user=denier") as ws:
        required = (await _ask_to_write(ws, "denied.txt"))[-1]
        await approve(ws, required, False)
        rest = await until_turn_ends(ws)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [False]
        # The client is told why (the code the model got), with no retry time: waiting does not help.
        assert [(f.get("error"), f.get("retry_after_ms")) for f in rest if f["type"] == "tool.finished"] == [
            ("not_approved", None)
        ]
        assert rest[-1]["type"] == "turn.completed"
        reread = await converse(ws, "read denied.txt", conversation_id=required["conversation_id"])
        assert "hello from agentry" not in answer(reread)


async def test_an_approval_reaches_only_the_conversation_it_names(stack: Stack) -> None:
    """Regression: two conversations of one user wait on the same call id (the offline
    model's ids are deterministic: same request, same id). Approving one must leave the
    other waiting; an approve echoing another digest than the one shown is refused."""
    async with connect(stack.ws_url + "?user=twin") as ws_a, connect(stack.ws_url + "?user=twin") as ws_b:
        first = (await _ask_to_write(ws_a, "twin.txt"))[-1]
        second = (await _ask_to_write(ws_b, "twin.txt"))[-1]
        assert first["call_id"] == second["call_id"]
        assert first["conversation_id"] != second["conversation_id"]
        await approve(ws_a, first, True)
        rest = await until_turn_ends(ws_a)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [True], rest[-1]
        with pytest.raises(TimeoutError):  # the second call still waits for its own answer
            await next_frame(ws_b, timeout=1.5)
        other_args = arguments_sha256({**second["arguments"], "path": "../elsewhere.txt"})
        await approve(ws_b, second, True, args_sha256=other_args, id="tampered")
        tampered = await next_frame(ws_b)
        assert (tampered["type"], tampered["code"], tampered["id"]) == ("error", "approval_args_mismatch", "tampered")
        await approve(ws_b, second, False)
        rest = await until_turn_ends(ws_b)
        assert [f["ok"] for f in rest if f["type"] == "tool.finished"] == [False], rest[-1]


async def test_a_turn_cancelled_while_its_call_waits_leaves_the_conversation_usable(stack: Stack) -> None:
    """Before: the cancelled turn kept its call without a result, and the conversation's
    next turn sent it so; a model that checks (the offline model does as OpenAI's API) refused
    it, and every later turn of the conversation failed `model_error`. And the client got
    no `tool.finished` for the call it was asked to approve: its chip (and the web page's
    approval dialog) stayed open for good."""
    async with connect(stack.ws_url + "?user=canceller") as ws:
        required = (await _ask_to_write(ws, "cancelled.txt"))[-1]
        await send(ws, {"type": "cancel", "turn_id": required["turn_id"]})
        ended = await until_turn_ends(ws)
        assert ended[-1]["type"] == "turn.failed" and ended[-1]["error"]["code"] == "cancelled", ended[-1]
        ends = [(f["call_id"], f["ok"], f.get("error")) for f in ended if f["type"] == "tool.finished"]
        assert ends == [(required["call_id"], False, "cancelled")]  # once, before the turn's end
        assert not [f for f in ended if f["type"] == "tool.started"]  # the call never ran
        later = await converse(ws, "hello again", conversation_id=required["conversation_id"])
        assert "hello again" in answer(later)
        reread = await converse(ws, "read cancelled.txt", conversation_id=required["conversation_id"])
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
        await approve(ws, required, True)
        late = await next_frame(ws)
        assert late["type"] == "error" and late["code"] == "approval_expired"
