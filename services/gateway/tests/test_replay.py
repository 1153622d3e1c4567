"""The replay/live merge, pure: every interleaving of pages from memory and live frames."""

from __future__ import annotations

import json

from agentry_gateway.replay import Frame, Gap, Item, Replay
from agentry_gateway.resync import page_frame


def f(seq: int) -> Frame:
    return Frame(seq, "message.delta", b'{"seq":%d}' % seq)


def seqs(items: list[Item]) -> list[int | tuple[int, int]]:
    return [item.seq if isinstance(item, Frame) else (item.first, item.last) for item in items]


def run(replay: Replay, pages: list[list[int]], page_size: int) -> list[int | tuple[int, int]]:
    """Feed pages (each one what memory would answer to the cursor at that moment), then release."""
    out: list[int | tuple[int, int]] = []
    for page in pages:
        assert not replay.fetched
        out += seqs(replay.accept([f(s) for s in page], full=len(page) == page_size))
    assert replay.fetched
    while items := replay.release():
        out += seqs(items)
    return out


def test_replay_only() -> None:
    replay = Replay(3, max_held=10)
    assert run(replay, [[4, 5, 6]], page_size=5) == [4, 5, 6]
    assert replay.cursor == 6


def test_paging_continues_while_pages_are_full() -> None:
    replay = Replay(0, max_held=10)
    assert seqs(replay.accept([f(1), f(2)], full=True)) == [1, 2]
    assert not replay.fetched
    assert seqs(replay.accept([f(3)], full=False)) == [3]
    assert replay.fetched


def test_nothing_to_replay() -> None:
    replay = Replay(7, max_held=10)
    assert run(replay, [[]], page_size=5) == []
    assert replay.cursor == 7


def test_live_before_first_page_is_also_in_the_page() -> None:
    """Frames 5, 6 were published after the subscription and stored before the fetch: both."""
    replay = Replay(3, max_held=10)
    replay.hold(f(5))
    replay.hold(f(6))
    assert run(replay, [[4, 5, 6]], page_size=10) == [4, 5, 6]


def test_live_during_replay_newer_than_the_pages() -> None:
    """Live 7 and 8 arrive between the pages, stored after the last fetch: released after it."""
    replay = Replay(0, max_held=10)
    out = seqs(replay.accept([f(1), f(2), f(3)], full=True))
    replay.hold(f(6))  # stored before the next fetch: in the page too
    replay.hold(f(7))
    out += seqs(replay.accept([f(4), f(5), f(6)], full=False))
    replay.hold(f(8))
    assert replay.fetched
    while items := replay.release():
        out += seqs(items)
    assert out == [1, 2, 3, 4, 5, 6, 7, 8]


def test_live_arriving_while_released_frames_are_handed_on() -> None:
    replay = Replay(0, max_held=10)
    replay.hold(f(3))
    assert seqs(replay.accept([f(1), f(2)], full=False)) == [1, 2]
    assert seqs(replay.release()) == [3]
    replay.hold(f(4))  # while 3 was being handed on
    replay.hold(f(3))  # redelivery
    assert seqs(replay.release()) == [4]
    assert replay.release() == []


def test_duplicates_are_handed_on_once() -> None:
    replay = Replay(2, max_held=10)
    replay.hold(f(4))
    replay.hold(f(4))
    replay.hold(f(2))  # at or below the cursor: the client has it
    # A page may repeat what came before (memory answering an older cursor) or be unsorted.
    out = seqs(replay.accept([f(1), f(2), f(3), f(4), f(4)], full=True))
    out += seqs(replay.accept([f(4), f(6), f(5)], full=False))
    replay.hold(f(6))
    replay.hold(f(7))
    while items := replay.release():
        out += seqs(items)
    assert out == [3, 4, 5, 6, 7]


def test_gap_before_the_first_replayed_frame() -> None:
    """Frames 4..9 expired: the client hears about it before frame 10."""
    replay = Replay(3, max_held=10)
    assert run(replay, [[10, 11]], page_size=5) == [(4, 9), 10, 11]


def test_gap_of_one_frame_and_after_seq_zero() -> None:
    assert run(Replay(0, max_held=10), [[2, 3]], page_size=5) == [(1, 1), 2, 3]
    assert run(Replay(0, max_held=10), [[1, 2]], page_size=5) == [1, 2]


def test_gap_when_everything_expired_but_live_frames_came() -> None:
    """Nothing stored after the cursor any more, yet live frames arrived during the fetch."""
    replay = Replay(3, max_held=10)
    replay.hold(f(20))
    replay.hold(f(21))
    assert run(replay, [[]], page_size=5) == [(4, 19), 20, 21]


def test_gap_inside_the_replay() -> None:
    """Retention deleted frames between two pages."""
    replay = Replay(0, max_held=10)
    assert run(replay, [[1, 2], [9]], page_size=2) == [1, 2, (3, 8), 9]


def test_held_frames_beyond_the_bound_are_fetched_instead() -> None:
    """Holding is bounded; dropped live frames are in memory, so the replay fetches on."""
    replay = Replay(0, max_held=2)
    for seq in (3, 4, 5, 6):
        replay.hold(f(seq))  # 5 and 6 dropped
    # The page was fetched before 5 and 6 were stored: not full, yet the replay goes on.
    assert seqs(replay.accept([f(1), f(2), f(3), f(4)], full=False)) == [1, 2, 3, 4]
    assert not replay.fetched
    assert seqs(replay.accept([f(5), f(6)], full=False)) == [5, 6]
    assert replay.fetched
    assert replay.release() == []


def test_dropped_frames_memory_does_not_have_end_the_replay() -> None:
    replay = Replay(0, max_held=1)
    replay.hold(f(2))
    replay.hold(f(3))  # dropped
    assert seqs(replay.accept([f(1)], full=False)) == [1]
    assert not replay.fetched
    assert seqs(replay.accept([], full=False)) == []  # no progress: stop asking
    assert replay.fetched
    assert seqs(replay.release()) == [2]


def test_unknown_cursor_releases_held_frames_in_order() -> None:
    replay = Replay(None, max_held=10)
    for seq in (9, 7, 8):
        replay.hold(f(seq))
    assert seqs(replay.release()) == [7, 8, 9]
    assert replay.cursor == 9


def test_refetch_after_a_second_outage() -> None:
    replay = Replay(0, max_held=10)
    assert seqs(replay.accept([f(1)], full=False)) == [1]
    assert replay.fetched
    replay.refetch()  # the broker went away again before the release
    assert not replay.fetched
    replay.hold(f(4))
    assert run(replay, [[2, 3, 4]], page_size=10) == [2, 3, 4]


def test_rewind_brings_back_what_never_reached_the_socket() -> None:
    """Its job stopped (an outage) after 4 of the page 4, 5, 6 was queued: 5 and 6 come
    again from memory instead of passing as already handed on."""
    replay = Replay(3, max_held=10)
    assert seqs(replay.accept([f(4), f(5), f(6)], full=False)) == [4, 5, 6]
    replay.rewind(4)
    replay.refetch()
    assert run(replay, [[5, 6, 7]], page_size=5) == [5, 6, 7]
    replay.rewind(9)  # never forward
    assert replay.cursor == 7


def test_gap_item_type() -> None:
    assert Replay(5, max_held=1).accept([f(8)], full=False) == [Gap(6, 7), f(8)]


def test_page_frame() -> None:
    doc = {"type": "message.delta", "conversation_id": "c1", "seq": 4, "text": "café"}
    frame = page_frame(doc, "c1")
    assert frame is not None and (frame.seq, frame.type) == (4, "message.delta")
    assert json.loads(frame.body) == doc and "café" in frame.body.decode()
    assert page_frame(doc, "c2") is None  # never hand on another conversation's frame
    assert page_frame({**doc, "seq": "4"}, "c1") is None
    assert page_frame({**doc, "seq": True}, "c1") is None
    assert page_frame({"conversation_id": "c1", "seq": 1}, "c1") is None
