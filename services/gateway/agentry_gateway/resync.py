"""Bringing one socket up to date on a conversation: `resume`, and catch-up after the
gateway lost the broker.

Both are the same job: hold the conversation's live frames (see `replay.Replay`), fetch
the stored frames after a cursor from memory page by page, hand them on, then release the
held frames the pages did not cover, and let live frames through again.

- Resume starts at the client's `after_seq`.
- A lost broker connection loses every frame published meanwhile (our queue is exclusive
  and dies with the connection). When the connection drops, each followed conversation
  starts holding with the cursor at the last seq the socket was sent; when it is back (the
  robust channel has re-declared the queue and its bindings), the jobs fetch what was
  missed. A resume that was running when the broker went away continues the same way.

A job fails (memory down, no known cursor) with an error frame to the client, which can
`resume` itself: `unavailable` for its own resume, `resume_required` for a catch-up. A job
hit by an outage first retries for a while: after a broker restart every service
reconnects on its own schedule, and memory may be back after us.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentry_shared.contracts.frames import ErrorFrame
from agentry_shared.contracts.scope import Scope

from agentry_gateway import inbound, metrics
from agentry_gateway.inbound import RESUME_GAP, RESUME_REQUIRED, UNAVAILABLE, Rejected
from agentry_gateway.memory_client import MemoryClient
from agentry_gateway.outbox import Offer, Outbox
from agentry_gateway.replay import Frame, Gap, Item, Replay

log = logging.getLogger(__name__)

Kind = Literal["resume", "catchup"]
RETRY_FIRST, RETRY_MAX = 0.5, 5.0


@dataclass(frozen=True)
class Tuning:
    """Shared by every socket of the process."""

    max_held: int = 1024  # live frames held per replay (the send queue's size)
    page: int = 500  # frames per GetFrames request (memory allows up to 10,000)
    stall_seconds: float = 30.0  # a replay waiting this long for the client to read: 1013
    # After an outage, memory may come back later than we do (each service reconnects on
    # its own schedule): a job hit by one retries `unavailable` fetches for this long.
    outage_retry_seconds: float = 60.0
    # Bound on concurrent fetches: after a reconnect every socket catches up at once.
    fetches: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))


class _Stalled(Exception):
    """The client stopped reading during a replay."""


@dataclass
class _Job:
    replay: Replay
    kind: Kind
    client_id: str | None = None  # the resume frame's id, echoed in its error frames
    task: asyncio.Task[None] | None = None
    started: bool = False  # a resume starts once subscribed; a catch-up when the broker is back
    outage: bool = False  # hit by a broker outage: memory may still be reconnecting
    # The last seq offered to the socket (or passed as a gap). The replay's cursor runs
    # ahead of it while a page waits for room; an outage then rewinds the cursor to it.
    handed: int | None = None

    def __post_init__(self) -> None:
        self.handed = self.replay.cursor


def page_frame(doc: dict[str, Any], conversation_id: str) -> Frame | None:
    """A stored frame as it goes on the wire, or None if it is not a frame of this conversation."""
    seq, frame_type = doc.get("seq"), doc.get("type")
    if doc.get("conversation_id") != conversation_id or not isinstance(frame_type, str):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return Frame(seq, frame_type, json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


class Resync:
    """The replay jobs of one socket, at most one per conversation."""

    def __init__(
        self,
        outbox: Outbox,
        memory: MemoryClient,
        scope_of: Callable[[str], Scope],
        send_error: Callable[[ErrorFrame], None],
        on_stall: Callable[[], None],
        tuning: Tuning,
    ) -> None:
        self._outbox = outbox
        self._memory = memory
        self._scope_of = scope_of
        self._send_error = send_error
        self._on_stall = on_stall
        self._tuning = tuning
        self._jobs: dict[str, _Job] = {}
        self._closed = False

    def intercept(self, conversation_id: str, seq: int, frame_type: str, body: bytes) -> bool:
        """Hold a live frame while its conversation replays; True if it was held."""
        job = self._jobs.get(conversation_id)
        if job is None:
            return False
        job.replay.hold(Frame(seq, frame_type, body))
        return True

    # ---- resume: install (before subscribing), then start ---------------------------

    def resume(self, conversation_id: str, after_seq: int, client_id: str | None) -> None:
        """Hold from now on; the latest resume of a conversation replaces a running one."""
        self._drop(conversation_id)
        self._jobs[conversation_id] = _Job(Replay(after_seq, max_held=self._tuning.max_held), "resume", client_id)
        self._outbox.reset(conversation_id, after_seq)

    def start(self, conversation_id: str) -> None:
        """Replay a resume; call once the socket is subscribed (frames may be missed before)."""
        job = self._jobs.get(conversation_id)
        if job is not None:
            self._run(conversation_id, job)

    def abandon(self, conversation_id: str) -> None:
        """The resume failed before it started: let live frames through again."""
        job = self._jobs.get(conversation_id)
        if job is not None:
            self._drop(conversation_id)
            self._hand_on_now(conversation_id, job.replay.release())

    # ---- broker lost / back ---------------------------------------------------------

    def pause(self, conversations: Iterable[str]) -> None:
        """The broker connection dropped: hold every followed conversation at its cursor."""
        if self._closed:
            return  # the socket is being closed
        for conversation_id in conversations:
            job = self._jobs.get(conversation_id)
            if job is None:
                replay = Replay(self._outbox.last_seq(conversation_id), max_held=self._tuning.max_held)
                self._jobs[conversation_id] = _Job(replay, "catchup", outage=True)
            else:
                job.outage = True
                if job.task is not None:
                    job.task.cancel()  # the job stays, with its progress; catch_up restarts it
                    job.task = None
                job.replay.rewind(job.handed)  # frames taken but not yet queued are fetched again
                job.replay.refetch()

    def catch_up(self) -> None:
        """The broker is back (queue and bindings restored): fetch what was missed."""
        for conversation_id, job in tuple(self._jobs.items()):
            # A resume not started yet is still subscribing: its own start() runs it.
            if job.kind == "catchup" or job.started:
                self._run(conversation_id, job)

    async def close(self) -> None:
        self._closed = True
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        self._jobs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the job ----------------------------------------------------------------------

    def _run(self, conversation_id: str, job: _Job) -> None:
        """Start the job unless it runs. A task cancelled by pause() may not have finished
        yet; it has no task any more and hands nothing on after its cancellation point."""
        job.started = True
        if job.task is None or job.task.done():
            job.task = asyncio.create_task(self._drive(conversation_id, job))

    def _drop(self, conversation_id: str) -> None:
        job = self._jobs.pop(conversation_id, None)
        if job is not None and job.task is not None:
            job.task.cancel()

    async def _drive(self, conversation_id: str, job: _Job) -> None:
        replay, sent = job.replay, 0
        try:
            if replay.cursor is None:
                raise Rejected(RESUME_REQUIRED, "the position of this socket in the conversation is unknown")
            scope = self._scope_of(conversation_id)
            while not replay.fetched:
                docs = await self._fetch(scope, job, replay.cursor)
                page = [frame for doc in docs if (frame := page_frame(doc, conversation_id)) is not None]
                if len(page) != len(docs):
                    log.warning("memory returned frames of another shape or conversation; skipped")
                items = replay.accept(page, full=len(docs) >= self._tuning.page)
                sent += await self._hand_on(conversation_id, job, items)
            while items := replay.release():
                sent += await self._hand_on(conversation_id, job, items)
        except Rejected as exc:
            self._fail(conversation_id, job, exc)
        except _Stalled:
            metrics.REPLAYS.labels(job.kind, "stalled").inc()
            self._on_stall()
        else:
            metrics.REPLAYS.labels(job.kind, "ok").inc()
            log.info("replayed", extra={"conversation_id": conversation_id, "kind": job.kind, "frames": sent})
        finally:
            metrics.REPLAYED_FRAMES.labels(job.kind).inc(sent)
        # No await since the last release() came back empty: nothing can be held and lost.
        if self._jobs.get(conversation_id) is job:
            del self._jobs[conversation_id]

    async def _fetch(self, scope: Scope, job: _Job, after_seq: int) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._tuning.outage_retry_seconds if job.outage else 0.0)
        pause = RETRY_FIRST
        while True:
            try:
                async with self._tuning.fetches:
                    return await self._memory.frames(scope, after_seq, self._tuning.page)
            except Rejected as exc:
                if exc.code != UNAVAILABLE or loop.time() + pause > deadline:
                    raise
                log.info(
                    "memory not answering after the outage; retrying", extra={"conversation_id": scope.conversation_id}
                )
            await asyncio.sleep(pause)
            pause = min(RETRY_MAX, pause * 2)

    async def _hand_on(self, conversation_id: str, job: _Job, items: list[Item]) -> int:
        sent = 0
        for item in items:
            if isinstance(item, Gap):
                self._send_error(self._gap_error(conversation_id, job, item))
                job.handed = item.last
                continue
            if not self._outbox.has_room:
                try:
                    async with asyncio.timeout(self._tuning.stall_seconds):
                        await self._outbox.room()
                except TimeoutError:
                    raise _Stalled from None
            offer = self._outbox.offer_frame(conversation_id, item.seq, item.type, item.body)
            if offer is Offer.OVERFLOW:
                raise _Stalled
            job.handed = item.seq
            sent += offer is Offer.QUEUED
        return sent

    def _hand_on_now(self, conversation_id: str, items: list[Item]) -> None:
        """Without waiting for room (failure paths): a full queue closes the socket as usual."""
        for item in items:
            if isinstance(item, Gap):
                continue  # the client is told to resume anyway
            if self._outbox.offer_frame(conversation_id, item.seq, item.type, item.body) is Offer.OVERFLOW:
                self._on_stall()
                return

    def _fail(self, conversation_id: str, job: _Job, exc: Rejected) -> None:
        metrics.REPLAYS.labels(job.kind, "failed").inc()
        log.warning("replay failed", extra={"conversation_id": conversation_id, "kind": job.kind, "code": exc.code})
        if job.kind == "resume":
            code, message = exc.code, f"resume failed: {exc.message}"
        else:
            code = RESUME_REQUIRED
            message = (
                "frames sent while the gateway was reconnecting to the broker could not be fetched "
                f"({exc.message}); send resume with the last seq you have"
            )
        self._send_error(inbound.error(code, message, id=job.client_id, conversation_id=conversation_id))
        # What was held is newer than anything sent: better late than never, in order.
        self._hand_on_now(conversation_id, job.replay.release())

    @staticmethod
    def _gap_error(conversation_id: str, job: _Job, gap: Gap) -> ErrorFrame:
        span = f"{gap.last}" if gap.first == gap.last else f"{gap.first} to {gap.last}"
        message = f"frames up to seq {gap.last} expired (seq {span} can no longer be replayed); continuing after them"
        return inbound.error(RESUME_GAP, message, id=job.client_id, conversation_id=conversation_id)
