"""How answer tokens become `message.delta` frames: the first at once, then fewer, larger ones."""

from __future__ import annotations

import pytest
from agentry_reasoner.coalesce import DeltaCoalescer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def frames_of(tokens: int, every_s: float, max_interval_s: float | None) -> list[str]:
    """The frames of an answer of `tokens` 4-character tokens, one every `every_s`."""
    clock, frames = Clock(), []

    async def send(text: str) -> None:
        frames.append(text)

    coalescer = DeltaCoalescer(send, 0.025, 64, max_interval_s, clock=clock)
    for i in range(tokens):
        await coalescer.add(f"t{i:02d} ")
        clock.now += every_s
    await coalescer.close()
    assert "".join(frames) == "".join(f"t{i:02d} " for i in range(tokens))  # nothing lost or reordered
    return frames


@pytest.mark.parametrize(("every_s", "handful"), [(0.005, 6), (0.025, 16)])
async def test_a_64_token_answer_is_a_handful_of_frames(every_s: float, handful: int) -> None:
    """At 200 tokens/s (the offline model in `make run`) and at 40 tokens/s (a hosted
    model): the first token alone and at once, then frames 25, 50, 100 ms apart at most."""
    frames = await frames_of(64, every_s, 0.1)
    assert frames[0] == "t00 "
    assert len(frames) <= handful
    fixed = await frames_of(64, every_s, None)  # without growth: one frame every 25 ms
    assert len(fixed) > len(frames)


async def test_max_chars_still_bounds_a_frame() -> None:
    frames = await frames_of(64, 0.001, 0.1)
    assert max(len(f) for f in frames) <= 64
