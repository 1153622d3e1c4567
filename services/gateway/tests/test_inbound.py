"""Every client-frame rule, without a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentry_gateway import approval, inbound
from agentry_shared.contracts.frames import APPROVE_ECHO_HINT, Approve, CancelTurn, ErrorFrame, Resume, SendMessage
from agentry_shared.contracts.memory import Approval, ApprovalState

LIMITS = inbound.Limits(max_frame_bytes=1024, max_text_chars=100)
DIGEST = "a" * 64


def approve_json(**fields: Any) -> str:
    """A valid `approve`, with `fields` changed (None: left out)."""
    frame = {"type": "approve", "turn_id": "t1", "call_id": "call_1", "args_sha256": DIGEST, "approved": True}
    frame.update(fields)
    return json.dumps({key: value for key, value in frame.items() if value is not None})


def refused(data: str | bytes) -> ErrorFrame:
    result = inbound.parse(data, LIMITS)
    assert isinstance(result, ErrorFrame), result
    return result


def test_valid_message() -> None:
    frame = inbound.parse(json.dumps({"type": "message", "text": "hi", "id": "m1", "conversation_id": "c-1"}), LIMITS)
    assert frame == SendMessage(type="message", text="hi", id="m1", conversation_id="c-1")


def test_minimal_message() -> None:
    frame = inbound.parse('{"type": "message", "text": "hi"}', LIMITS)
    assert isinstance(frame, SendMessage)
    assert frame.conversation_id is None and frame.id is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"type":"message","text":"hi"}', "binary_not_supported"),
        ("not json", "invalid_json"),
        ("{", "invalid_json"),
        ('[{"type":"message","text":"hi"}]', "invalid_frame"),
        ('"message"', "invalid_frame"),
        ("42", "invalid_frame"),
        ("{}", "unknown_type"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"type":5,"text":"hi"}', "unknown_type"),
        ('{"type":"message"}', "invalid_message"),
        ('{"type":"message","text":""}', "invalid_message"),
        ('{"type":"message","text":"  \\n\\t "}', "invalid_message"),
        ('{"type":"message","text":7}', "invalid_message"),
        ('{"type":"message","text":"hi","extra":1}', "invalid_message"),
        ('{"type":"message","text":"hi","conversation_id":"a b"}', "invalid_message"),
        ('{"type":"message","text":"hi","conversation_id":""}', "invalid_message"),
        ('{"type":"message","text":"hi","id":3}', "invalid_message"),
        ('{"type":"message","text":"hi","conversation_id":7}', "invalid_message"),
        (json.dumps({"type": "message", "text": "x" * 101}), "text_too_long"),
        ('{"type":"cancel"}', "invalid_cancel"),
        ('{"type":"cancel","turn_id":""}', "invalid_cancel"),
        ('{"type":"cancel","turn_id":"a b"}', "invalid_cancel"),
        ('{"type":"cancel","turn_id":5}', "invalid_cancel"),
        ('{"type":"cancel","turn_id":"t1","conversation_id":"c"}', "invalid_cancel"),
        ('{"type":"resume"}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c1","after_seq":-1}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c1","after_seq":"5"}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c1","after_seq":true}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c1","after_seq":1.5}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c 1"}', "invalid_resume"),
        ('{"type":"resume","conversation_id":"c1","text":"x"}', "invalid_resume"),
        ('{"type":"approve","approved":true}', "invalid_approve"),
        (approve_json(call_id=None), "invalid_approve"),
        (approve_json(approved=None), "invalid_approve"),
        (approve_json(call_id=""), "invalid_approve"),
        (approve_json(approved="true"), "invalid_approve"),
        (approve_json(approved=1), "invalid_approve"),
        (approve_json(call_id=7), "invalid_approve"),
        (approve_json(call_id="c" * 129), "invalid_approve"),
        (approve_json(turn_id=None), "invalid_approve"),
        (approve_json(turn_id=""), "invalid_approve"),
        (approve_json(turn_id="t 1"), "invalid_approve"),
        (approve_json(args_sha256=None), "invalid_approve"),
        (approve_json(args_sha256="A" * 64), "invalid_approve"),  # lowercase hex, as sent
        (approve_json(args_sha256="a" * 63), "invalid_approve"),
        (approve_json(conversation_id=""), "invalid_approve"),
        (approve_json(arguments={}), "invalid_approve"),
        (json.dumps({"type": "message", "text": "x" * 2000}), "frame_too_large"),
    ],
)
def test_refusals(data: str | bytes, code: str) -> None:
    assert refused(data).code == code


def test_valid_cancel_and_resume() -> None:
    assert inbound.parse('{"type":"cancel","turn_id":"t-1","id":"k1"}', LIMITS) == CancelTurn(
        type="cancel", turn_id="t-1", id="k1"
    )
    assert inbound.parse('{"type":"resume","conversation_id":"c1","after_seq":12}', LIMITS) == Resume(
        type="resume", conversation_id="c1", after_seq=12
    )
    resume = inbound.parse('{"type":"resume","conversation_id":"c1"}', LIMITS)
    assert isinstance(resume, Resume) and resume.after_seq == 0


def test_cancel_and_resume_errors_echo_the_id() -> None:
    error = refused('{"type":"resume","conversation_id":"c1","after_seq":-1,"id":"r1"}')
    assert (error.code, error.id) == ("invalid_resume", "r1")
    assert error.message.startswith("after_seq")


def test_nesting_deep_enough_to_recurse() -> None:
    """json.loads raises RecursionError here: it must become an error frame, not a crash."""
    deep = "[" * 100_000 + "]" * 100_000
    assert inbound.parse(deep, inbound.Limits(max_frame_bytes=10**6, max_text_chars=10)).code == "invalid_json"  # type: ignore[union-attr]


def test_size_is_counted_in_utf8_bytes() -> None:
    # 300 characters, 1200 bytes: over a 1024-byte limit although under it in characters.
    text = json.dumps({"type": "message", "text": "\U0001f600" * 300}, ensure_ascii=False)
    assert len(text) < 1024
    assert refused(text).code == "frame_too_large"


def test_exactly_at_limit_is_accepted() -> None:
    base = '{"type":"message","text":""}'
    data = base.replace('""', '"' + "é" * 40 + '"')  # multi-byte text, well under
    assert isinstance(inbound.parse(data, LIMITS), SendMessage)
    padded = '{"type":"message","text":"hi"}' + " " * (1024 - 30)
    assert len(padded.encode()) == 1024
    assert isinstance(inbound.parse(padded, LIMITS), SendMessage)
    assert refused(padded + " ").code == "frame_too_large"


def test_client_id_is_echoed_when_readable() -> None:
    assert refused('{"type":"message","text":"","id":"m7"}').id == "m7"
    assert refused('{"type":"dance","id":"m8"}').id == "m8"
    assert refused('{"type":"message","text":"","id":7}').id is None
    assert refused(json.dumps({"type": "message", "text": "", "id": "x" * 129})).id is None
    assert refused("nope").id is None


def test_text_too_long_carries_the_conversation() -> None:
    error = refused(json.dumps({"type": "message", "text": "x" * 101, "conversation_id": "c1", "id": "m"}))
    assert (error.code, error.conversation_id, error.id) == ("text_too_long", "c1", "m")


def test_error_messages_do_not_echo_input() -> None:
    error = refused('{"type":"message","text":"secret-ish","extra":"payload-value"}')
    assert "payload-value" not in error.message
    assert error.message.startswith("extra")


def test_valid_approve() -> None:
    assert inbound.parse(approve_json(approved=False, id="p1"), LIMITS) == Approve(
        type="approve", turn_id="t1", call_id="call_1", args_sha256=DIGEST, approved=False, id="p1"
    )
    named = inbound.parse(approve_json(conversation_id="c1"), LIMITS)
    assert isinstance(named, Approve) and named.conversation_id == "c1"


@pytest.mark.parametrize("missing", ["turn_id", "args_sha256", "call_id"])
def test_an_approve_without_what_it_echoes_says_what_to_send(missing: str) -> None:
    """A client written before `turn_id` and `args_sha256`: told to echo them, not guessed."""
    error = refused(approve_json(**{missing: None}, id="p1"))
    assert (error.code, error.id) == ("invalid_approve", "p1")
    assert error.message == APPROVE_ECHO_HINT


@pytest.mark.parametrize(
    ("approved", "state", "code"),
    [
        (True, "approved", None),
        (False, "denied", None),
        (True, "denied", "approval_already_decided"),
        (False, "approved", "approval_already_decided"),
        (True, "expired", "approval_expired"),
        (False, "expired", "approval_expired"),
        (True, "pending", "unavailable"),  # memory did not record it: never claim success
    ],
)
def test_approval_outcome(approved: bool, state: ApprovalState, code: str | None) -> None:
    frame = Approve(type="approve", turn_id="t1", call_id="c1", args_sha256=DIGEST, approved=approved)
    reply = Approval(conversation_id="c", turn_id="t1", call_id="c1", state=state, args_sha256=DIGEST)
    refused = approval.refusal(frame, reply)
    assert (refused[0] if refused else None) == code


@pytest.mark.parametrize("state", ["pending", "approved", "denied", "expired"])
@pytest.mark.parametrize("kept", ["b" * 64, None])
def test_an_approval_of_other_arguments_is_refused(state: ApprovalState, kept: str | None) -> None:
    frame = Approve(type="approve", turn_id="t1", call_id="c1", args_sha256=DIGEST, approved=True)
    reply = Approval(conversation_id="c", turn_id="t1", call_id="c1", state=state, args_sha256=kept)
    refused = approval.refusal(frame, reply)
    assert refused is not None and refused[0] == "approval_args_mismatch"
