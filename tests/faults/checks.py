"""What every fault test asserts about what a client saw."""

from __future__ import annotations

from typing import Any


def assert_clean_stream(frames: list[dict[str, Any]], *, gap_free: bool = True) -> str:
    """seq strictly increases (`gap_free`: by one, as on a socket that got every frame of the
    conversation from the first of `frames` on), exactly one terminal frame, and the answer
    equals the deltas received after the last `message.reset` (partial text from a dead
    attempt is dropped)."""
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seq not strictly increasing: {seqs}"
    if gap_free:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq has a gap: {seqs}"
    terminal = [f for f in frames if f["type"] in ("turn.completed", "turn.failed")]
    assert len(terminal) == 1, [f["type"] for f in frames]
    assert frames[-1] is terminal[0]
    assert sum(f["type"] == "turn.started" for f in frames) <= 1
    if terminal[0]["type"] != "turn.completed":
        return ""
    last_reset = max((i for i, f in enumerate(frames) if f["type"] == "message.reset"), default=-1)
    after = "".join(f["text"] for f in frames[last_reset + 1 :] if f["type"] == "message.delta")
    text: str = terminal[0]["text"]
    assert after == text, (after, text)
    return text
