"""Frames a hostile or buggy client sends on purpose: each costs one error frame, never the
socket, a retryable answer to a client mistake, or a traceback in the log."""

from __future__ import annotations

import json

import pytest
from agentry_gateway import inbound
from agentry_shared.contracts.frames import MAX_CLIENT_INT, ErrorFrame, Resume

LIMITS = inbound.Limits(max_frame_bytes=1024, max_text_chars=100)


def refused(data: str) -> ErrorFrame:
    result = inbound.parse(data, LIMITS)
    assert isinstance(result, ErrorFrame), result
    return result


@pytest.mark.parametrize("after_seq", [2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**400])
def test_after_seq_beyond_the_bound_is_the_clients_mistake(after_seq: int) -> None:
    error = refused(json.dumps({"type": "resume", "conversation_id": "c1", "after_seq": after_seq, "id": "r1"}))
    assert (error.code, error.id) == ("invalid_resume", "r1")
    assert error.message.startswith("after_seq")


def test_after_seq_at_the_bound_is_accepted() -> None:
    frame = inbound.parse(json.dumps({"type": "resume", "conversation_id": "c1", "after_seq": MAX_CLIENT_INT}), LIMITS)
    assert isinstance(frame, Resume) and frame.after_seq == 2**53
