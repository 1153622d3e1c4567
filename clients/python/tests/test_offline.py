"""The client's pure parts: frame parsing, the identity in the URL, the approve it builds,
the state file. (Against the real gateway: tests/e2e/test_client_library.py and test_cli.py.)"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from agentry_client import ServerError, Turn, UnknownFrame, frame_dict, parse_frame
from agentry_client.cli import parser
from agentry_client.client import AgentryClient, approve_frame, with_user
from agentry_client.render import TerminalRenderer
from agentry_client.state import State, identity
from agentry_shared.contracts.frames import (
    ConversationList,
    ErrorFrame,
    MessageDelta,
    ToolApprovalRequired,
    ToolFinished,
    TurnFailed,
    arguments_sha256,
)


def test_server_frames_parse_into_the_shared_models() -> None:
    raw = {"type": "message.delta", "conversation_id": "c", "turn_id": "t", "seq": 9, "text": "= 3367."}
    frame = parse_frame(json.dumps(raw))
    assert isinstance(frame, MessageDelta) and frame.text == "= 3367."
    assert frame_dict(frame) == raw
    error = parse_frame('{"type": "error", "code": "forbidden", "message": "not yours", "id": "m-1"}')
    assert isinstance(error, ErrorFrame) and error.code == "forbidden" and error.id == "m-1"


def test_a_frame_type_from_a_newer_gateway_is_kept_not_refused() -> None:
    frame = parse_frame('{"type": "turn.paused", "conversation_id": "c", "seq": 3, "why": "later"}')
    assert isinstance(frame, UnknownFrame) and frame.type == "turn.paused" and frame.seq == 3
    assert frame_dict(frame)["why"] == "later"


def test_something_that_is_no_frame_is_a_value_error() -> None:
    for raw in ("[1, 2]", '{"no": "type"}', "not json"):
        with pytest.raises(ValueError):
            parse_frame(raw)


def test_the_dev_user_goes_in_the_query_string() -> None:
    assert with_user("ws://h:8080/ws", "alice") == "ws://h:8080/ws?user=alice"
    assert with_user("ws://h:8080/ws?user=bob&x=1", "alice") == "ws://h:8080/ws?x=1&user=alice"
    assert with_user("ws://h:8080/ws", None) == "ws://h:8080/ws"


def test_approve_echoes_the_call_it_answers() -> None:
    digest = arguments_sha256({"path": "a.txt"})
    request = ToolApprovalRequired(
        conversation_id="c",
        turn_id="t",
        seq=5,
        tool="workspace_write",
        call_id="call_7",
        arguments={"path": "a.txt"},
        args_sha256=digest,
        expires_in_ms=1,
    )
    frame = approve_frame(request, True, id="p-1")
    expected = {
        "type": "approve",
        "conversation_id": "c",
        "turn_id": "t",
        "call_id": "call_7",
        "args_sha256": digest,
        "approved": True,
        "id": "p-1",
    }
    assert frame.model_dump(exclude_none=True) == expected


def test_the_last_conversation_is_kept_per_url_and_user(tmp_path: Path) -> None:
    state = State(tmp_path / "agentry" / "state.json")
    assert state.last_conversation("ws://a/ws", "alice") is None
    state.remember("ws://a/ws", "alice", "c-1")
    state.remember("ws://b/ws", "alice", "c-2")
    assert State(state.path).last_conversation("ws://a/ws", "alice") == "c-1"
    assert state.last_conversation("ws://b/ws", "alice") == "c-2"
    assert state.last_conversation("ws://a/ws", "bob") is None


def test_the_identity_is_the_user_or_the_tokens_subject() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "carol"}).encode()).decode().rstrip("=")
    assert identity(None, f"header.{claims}.signature") == "carol"
    assert identity("alice", None) == "alice"
    assert identity(None, "garbage") == "token"
    assert identity(None, None) == "dev"


def _finished(**fields: Any) -> str:
    """What the terminal shows for one `tool.finished` frame, as the gateway sends it."""
    raw = {
        "type": "tool.finished",
        "conversation_id": "c",
        "turn_id": "t",
        "seq": 8,
        "tool": "calculator",
        "call_id": "call_3",
        **fields,
    }
    frame = parse_frame(json.dumps(raw))
    out = io.StringIO()
    TerminalRenderer(out, io.StringIO(), animate=False).frame(frame)
    return out.getvalue()


def test_a_failed_tool_call_says_which_limit_and_when_to_retry() -> None:
    assert _finished(ok=True, elapsed_ms=31) == "⚙ calculator… done (31 ms)\n"
    limited = _finished(ok=False, error="rate_limited", retry_after_ms=11_001)
    assert limited == "⚙ calculator… failed: rate limited, retry in 12 s (0 ms)\n"  # rounded up, never sooner
    assert _finished(ok=False, error="tool_limit") == "⚙ calculator… failed: tool limit (0 ms)\n"
    assert _finished(ok=False, error="output_too_large", elapsed_ms=40) == (
        "⚙ calculator… failed: output too large (40 ms)\n"
    )
    assert _finished(ok=False, error="failed", elapsed_ms=5) == "⚙ calculator… failed (5 ms)\n"
    assert _finished(ok=False, elapsed_ms=5) == "⚙ calculator… failed (5 ms)\n"  # stored before codes were sent


async def test_a_code_from_a_newer_gateway_keeps_the_conversation_going() -> None:
    """A frame of a known type with a code this client does not know keeps its class and
    its seq: refused, it left a gap no resume could fill, and the conversation stalled."""
    client = AgentryClient("ws://127.0.0.1:9/ws")
    ids = {"conversation_id": "c", "turn_id": "t"}
    raws = [
        {"type": "tool.started", "seq": 1, "tool": "calculator", "call_id": "k", **ids},
        {"type": "tool.finished", "seq": 2, "tool": "calculator", "call_id": "k", "ok": False, "error": "brand_new"},
        {"type": "turn.failed", "seq": 3, "error": {"code": "brand_new_failure", "message": "later"}, **ids},
    ]
    raws[1].update(ids)
    with client.listen() as listener:
        for raw in raws:
            client._on_raw(json.dumps(raw))
        got = [await asyncio.wait_for(listener.get(), 1) for _ in raws]
    assert [type(f).__name__ for f in got] == ["ToolStarted", "ToolFinished", "TurnFailed"]
    # The code as it came (the models' types name only the codes this client knows).
    assert isinstance(got[1], ToolFinished) and frame_dict(got[1])["error"] == "brand_new"
    assert isinstance(got[2], TurnFailed)
    assert frame_dict(got[2])["error"] == {"code": "brand_new_failure", "message": "later"}
    assert client.last_seq == {"c": 3} and not client._resuming


def test_a_frame_with_a_wrong_field_is_still_refused() -> None:
    with pytest.raises(ValueError):
        parse_frame('{"type": "tool.finished", "conversation_id": "c", "seq": 2, "tool": 7, "call_id": "k"}')


def test_a_refusal_over_a_limit_says_when_to_retry() -> None:
    """Regression: `agentry` printed "refused: rate_limited: over BUDGET_USER_TURNS_PER_MINUTE:
    ...; send it again after retry_after_ms" without the wait itself, which only the frame's
    `retry_after_ms` carries. The error now says it, rounded up to whole seconds."""
    message = "over BUDGET_USER_TURNS_PER_MINUTE: the message was not accepted; send it again after retry_after_ms"
    refused = ServerError(ErrorFrame(code="rate_limited", message=message, id="m-1", retry_after_ms=11_001))
    assert str(refused) == f"rate_limited: {message} (retry in 12 s)"
    assert refused.retry_after_ms == 11_001
    assert str(ServerError(ErrorFrame(code="forbidden", message="not yours"))) == "forbidden: not yours"


async def test_a_resume_over_expired_frames_goes_on_from_the_first_kept_one() -> None:
    """Regression: `resume(c, after_seq)` over frames that had expired (`resume_gap`: they are
    kept 24 hours) got the kept ones from a higher seq; the client took that jump for a gap
    still being filled and dropped every frame of the conversation from then on."""
    client = AgentryClient("ws://127.0.0.1:9/ws")
    client.last_seq["c"] = 5  # what `resume("c", 5)` records before sending the frame
    client._resuming.add("c")
    ids = {"conversation_id": "c", "turn_id": "t"}
    raws = [
        {"type": "error", "code": "resume_gap", "message": "frames up to seq 30 expired", "conversation_id": "c"},
        {"type": "message.delta", "seq": 31, "text": "kept ", **ids},
        {"type": "message.delta", "seq": 32, "text": "and live", **ids},
    ]
    with client.listen() as listener:
        for raw in raws:
            client._on_raw(json.dumps(raw))
        got = [await asyncio.wait_for(listener.get(), 1) for _ in raws]
    assert [getattr(f, "seq", None) for f in got] == [None, 31, 32]
    assert client.last_seq == {"c": 32} and not client._resuming


def test_the_conversations_frame_parses_into_its_model() -> None:
    """Regression: the answer to `list_conversations` came as an `UnknownFrame` (no typed
    way to read the user's conversations); it is the shared `ConversationList` now, and
    `agentry conversations` refuses a `--limit` out of the protocol's 1 to 200 itself."""
    raw = {
        "type": "conversations",
        "id": "l-1",
        "conversations": [
            {"conversation_id": "c-2", "created_at": 1767000000.5, "last_activity_at": 1767000042.1, "title": "hi"},
            {"conversation_id": "c-1", "created_at": 1766000000.0, "last_activity_at": 1766000001.0, "title": ""},
        ],
    }
    frame = parse_frame(json.dumps(raw))
    assert isinstance(frame, ConversationList) and frame.id == "l-1"
    assert [c.conversation_id for c in frame.conversations] == ["c-2", "c-1"]
    assert frame_dict(frame) == raw
    assert parser().parse_args(["conversations", "--limit", "200"]).limit == 200
    for bad in ("0", "201", "ten"):
        with pytest.raises(SystemExit):
            parser().parse_args(["conversations", "--limit", bad])


async def test_a_conversations_frame_is_no_conversations_frame() -> None:
    """It has no conversation_id and no seq: it reaches listeners, and a turn waiting for its
    message's acceptance passes it by."""
    client = AgentryClient("ws://127.0.0.1:9/ws")
    with client.listen() as listener:
        client._on_raw(json.dumps({"type": "conversations", "id": "l-1", "conversations": []}))
        got = await asyncio.wait_for(listener.get(), 1)
    assert isinstance(got, ConversationList) and not client.last_seq
    turn = Turn(client, client.listen(), "m-1", None)
    accepted = {"type": "message.accepted", "conversation_id": "c", "turn_id": "t", "seq": 1, "id": "m-1"}
    assert turn._take(parse_frame(json.dumps(accepted))) is not None  # a turn of its own now
    assert turn._take(got) is None and len(turn.frames) == 1
    turn.close()
