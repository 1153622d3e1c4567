"""Send queue, seq dedupe, rate limit and frame header parsing: the pure parts of fan-out."""

from __future__ import annotations

import asyncio
import json

from agentry_gateway.fanout import frame_header
from agentry_gateway.outbox import Offer, Outbox
from agentry_gateway.ratelimit import TokenBucket


def body(conversation_id: str, seq: int, frame_type: str = "message.delta") -> bytes:
    return json.dumps({"type": frame_type, "conversation_id": conversation_id, "seq": seq}).encode()


async def test_dedupe_per_conversation() -> None:
    outbox = Outbox(16)
    assert outbox.offer_frame("a", 1, "t", body("a", 1)) is Offer.QUEUED
    assert outbox.offer_frame("a", 1, "t", body("a", 1)) is Offer.DUPLICATE
    assert outbox.offer_frame("b", 1, "t", body("b", 1)) is Offer.QUEUED  # other conversation, own sequence
    assert outbox.offer_frame("a", 3, "t", body("a", 3)) is Offer.QUEUED
    assert outbox.offer_frame("a", 2, "t", body("a", 2)) is Offer.DUPLICATE  # late redelivery
    assert [await outbox.get() for _ in range(len(outbox))] == [
        ("t", body("a", 1)),
        ("t", body("b", 1)),
        ("t", body("a", 3)),
    ]


async def test_first_frame_of_a_conversation_may_have_any_seq() -> None:
    outbox = Outbox(16)
    assert outbox.offer_frame("a", 0, "t", b"{}") is Offer.QUEUED


async def test_overflow_is_reported_not_blocking() -> None:
    outbox = Outbox(2)
    assert outbox.offer_frame("a", 1, "t", b"1") is Offer.QUEUED
    assert outbox.offer_error(b"e") is Offer.QUEUED
    assert outbox.offer_frame("a", 2, "t", b"2") is Offer.OVERFLOW
    assert outbox.offer_error(b"e") is Offer.OVERFLOW
    # A refused frame does not advance the dedupe mark: it was never queued.
    await outbox.get()
    assert outbox.offer_frame("a", 2, "t", b"2") is Offer.QUEUED


async def test_room_is_half_the_queue() -> None:
    """Replays wait for room; live frames may still use the other half."""
    outbox = Outbox(4)
    assert outbox.has_room
    outbox.offer_frame("a", 1, "t", b"1")
    outbox.offer_frame("a", 2, "t", b"2")
    assert outbox.has_room  # 2 of 4
    outbox.offer_frame("a", 3, "t", b"3")
    assert not outbox.has_room
    waiter = asyncio.create_task(outbox.room())
    await asyncio.sleep(0)
    assert not waiter.done()
    await outbox.get()
    await asyncio.wait_for(waiter, 1)
    assert outbox.has_room


async def test_get_waits_for_an_item() -> None:
    outbox = Outbox(4)
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    outbox.offer_error(b"e")
    assert await asyncio.wait_for(getter, 1) == ("error", b"e")
    assert len(outbox) == 0


def test_reset_moves_the_dedupe_mark() -> None:
    outbox = Outbox(16)
    assert outbox.last_seq("a") is None
    outbox.offer_frame("a", 9, "t", b"9")
    outbox.reset("a", 3)  # resume after 3: 4.. may be queued again
    assert outbox.last_seq("a") == 3
    assert outbox.offer_frame("a", 4, "t", b"4") is Offer.QUEUED
    outbox.reset("a", None)
    assert outbox.offer_frame("a", 1, "t", b"1") is Offer.QUEUED


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    assert [bucket.allow(0.0) for _ in range(5)] == [True, True, True, True, False]
    assert bucket.allow(0.25) is False  # half a token
    assert bucket.allow(0.5) is True
    assert bucket.allow(100.0) and bucket.allow(100.0)  # refills, but only up to the burst
    assert sum(bucket.allow(100.0) for _ in range(10)) == 2


def test_frame_header() -> None:
    assert frame_header(body("c1", 7, "turn.started")) == ("c1", 7, "turn.started")
    assert frame_header(b"not json") is None
    assert frame_header(b"[1]") is None
    assert frame_header(json.dumps({"type": "x", "conversation_id": "c", "seq": "7"}).encode()) is None
    assert frame_header(json.dumps({"type": "x", "conversation_id": "c", "seq": True}).encode()) is None
    assert frame_header(json.dumps({"conversation_id": "c", "seq": 1}).encode()) is None
