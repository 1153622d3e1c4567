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
    clock, frames, lasts = Clock(), [], []

    async def send(text: str, last: bool) -> None:
        frames.append(text)
        lasts.append(last)

    coalescer = DeltaCoalescer(send, 0.025, 64, max_interval_s, clock=clock)
    for i in range(tokens):
        await coalescer.add(f"t{i:02d} ")
        clock.now += every_s
    await coalescer.close()
    assert "".join(frames) == "".join(f"t{i:02d} " for i in range(tokens))  # nothing lost or reordered
    assert lasts[:-1] == [False] * (len(lasts) - 1)  # only what close() sends is the last piece
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


async def test_max_chars_bounds_a_frame_and_grows_with_the_interval() -> None:
    """A fast model (1,000 tokens/s): 64 characters at first, then more as the interval
    grows (up to 4x: 25 -> 100 ms), so a fast answer is a handful of frames too."""
    frames = await frames_of(64, 0.001, 0.1)
    assert len(frames[1]) <= 64
    assert max(len(f) for f in frames) <= 4 * 64
    fixed = await frames_of(64, 0.001, None)  # no growth: 64 characters all along
    assert max(len(f) for f in fixed) <= 64
    assert len(frames) < len(fixed)
