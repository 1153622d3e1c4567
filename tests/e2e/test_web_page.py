"""The web chat page in a real browser (Debian's chromium driven by Playwright) against a
real stack: streaming, thinking, tool chips, approval, cancel, a gateway restart survived
by resuming, the conversation list, and no reasoning text anywhere in the page.

The browser comes from apt (`scripts/ensure-browser.sh`, run by `make test`); Playwright
never downloads one. A screenshot of each step is saved under the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agentry_offline_model.reply import REASONING_SENTINEL
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect, sync_playwright

from tests.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("AGENTRY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 30_000
# What the offline model streams as reasoning_content (rules.py, answers.py): none of it
# may reach the page, since the gateway never sends reasoning text.
REASONING_TEXTS = (
    REASONING_SENTINEL,
    "The user wrote",
    "I will make",
    "tool result",
    "Each one succeeded",
    "I will state the results",
)
COUNT_TO = 40
TOOL_CALLS_PER_MINUTE = 2  # a question of four sums gets two of its calculator calls refused
LAST_TURN = ".transcript:not([hidden]) .turn:last-child"


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Slow enough chunks (120 ms) to see the thinking indicator and to restart the gateway
    mid-answer; a tool rate limit low enough to reach with one question."""
    s = Stack(
        Path(tmp_path_factory.mktemp("webstack")),
        OFFLINE_MODEL_CHUNK_DELAY_MS="120",
        REASONER_TOOL_CALLS_PER_MINUTE=str(TOOL_CALLS_PER_MINUTE),
    )
    try:
        s.start_all()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-browser.sh (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            yield launched
        finally:
            launched.close()


class Steps:
    """Screenshots numbered in the order taken."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


def send(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_the_web_page_end_to_end(web_stack: Stack, browser: Browser, tmp_path: Path) -> None:
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    steps = Steps(page, tmp_path)
    port = web_stack.ports["gateway"]
    user = f"web-{uuid.uuid4().hex[:8]}"
    try:
        page.goto(f"http://127.0.0.1:{port}/?user={user}")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        steps.shot("connected")

        # A question: thinking, a calculator chip, the streamed answer.
        send(page, "what is 37*91?")
        expect(page.locator(".thinking.active").first).to_be_visible()
        steps.shot("thinking")
        expect(page.locator('.chip[data-tool="calculator"]').first).to_be_visible()
        steps.shot("calculator-chip")
        turn = page.locator(".turn").last
        expect(turn).to_have_attribute("data-state", "completed")
        expect(turn.locator(".answer")).to_contain_text("3367")
        expect(page.locator('.chip[data-tool="calculator"]').first).to_have_attribute("data-state", "done")
        steps.shot("answer")

        # A destructive call: the approval dialog, echoing turn_id, call_id, args_sha256.
        page.click("#new-conversation")
        send(page, 'save "2+2=4" to notes.txt')
        dialog = page.locator("#approval")
        expect(dialog).to_be_visible()
        expect(page.locator("#approval-tool")).to_have_text("workspace_write")
        expect(page.locator("#approval-arguments")).to_contain_text("notes.txt")
        steps.shot("approval")
        page.click("#approve")
        expect(dialog).to_be_hidden()
        chip = page.locator(f'{LAST_TURN} .chip[data-tool="workspace_write"]')
        expect(chip).to_have_attribute("data-state", "done")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        steps.shot("approved")

        # Cancel a long answer.
        page.click("#new-conversation")
        send(page, "count to 400")
        expect(page.locator(f"{LAST_TURN} .answer")).to_contain_text("3 4")
        page.click(f"{LAST_TURN} .cancel")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "failed")
        expect(page.locator(f"{LAST_TURN} .status")).to_contain_text("cancelled")
        steps.shot("cancelled")

        # The gateway restarts mid-answer: the page reconnects and resumes after its last seq.
        page.click("#new-conversation")
        send(page, f"count to {COUNT_TO}")
        expect(page.locator(f"{LAST_TURN} .answer")).to_contain_text("3 4")
        (gateway,) = web_stack.replicas("gateway")
        web_stack.terminate(gateway)
        expect(page.locator("#connection")).not_to_have_attribute("data-state", "open")
        steps.shot("gateway-down")
        web_stack.wait_ready(web_stack.start("gateway", port=port))
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        counted = " ".join(str(n) for n in range(1, COUNT_TO + 1))
        expect(page.locator(f"{LAST_TURN} .answer")).to_have_text(counted)  # no gap, no duplicate
        steps.shot("resumed")

        # The list: every conversation, newest activity first; opening one replays it.
        titles = page.locator("#conversations .title")
        expect(titles).to_have_text(
            [f"count to {COUNT_TO}", "count to 400", 'save "2+2=4" to notes.txt', "what is 37*91?"]
        )
        page.click("#conversations button >> text=what is 37*91?")
        expect(page.locator(".transcript:not([hidden]) .answer")).to_contain_text("3367")
        steps.shot("conversation-list")

        # Another browser of the same user: the list, and a conversation replayed from its start.
        other = context.new_page()
        other.goto(f"http://127.0.0.1:{port}/?user={user}")
        other.click("#conversations button >> text=what is 37*91?")
        expect(other.locator(".transcript:not([hidden]) .answer")).to_contain_text("3367")
        expect(other.locator('.transcript:not([hidden]) .chip[data-tool="calculator"]')).to_have_attribute(
            "data-state", "done"
        )
        other.screenshot(path=str(tmp_path / "12-second-page-replayed.png"), full_page=True)
        html = page.content() + other.content()
        leaked = [text for text in REASONING_TEXTS if text in html]
        assert not leaked, f"reasoning text in the page: {leaked}"
        assert not [e for e in console_errors if re.search("Content.Security.Policy|Refused", e)], console_errors
    finally:
        steps.shot("last")
        context.close()


def test_a_refusal_says_which_limit_and_when_to_retry(web_stack: Stack, browser: Browser) -> None:
    """A refused message is shown as not sent, and a limit's notice says when to retry
    (`retry_after_ms`), not only that there is a time. So does the chip of a tool call the
    reasoner refused over REASONER_TOOL_CALLS_PER_MINUTE (`tool.finished` `error`)."""
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"http://127.0.0.1:{web_stack.ports['gateway']}/?user=web-{uuid.uuid4().hex[:8]}")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        send(page, "x" * 32_001)  # over GATEWAY_MAX_TEXT_CHARS (32,000 by default)
        expect(page.locator("#notice")).to_contain_text("text_too_long")
        expect(page.locator(".transcript:not([hidden]) .user").last).to_have_attribute("data-state", "refused")
        # Four calculator calls at once, two over the per-minute limit: their chips say so.
        send(page, "what is 1+1, 2+2, 3+3 and 4+4?")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        chips = page.locator(f'{LAST_TURN} .chip[data-tool="calculator"]')
        expect(chips).to_have_count(4)
        expect(page.locator(f'{LAST_TURN} .chip[data-state="done"]')).to_have_count(TOOL_CALLS_PER_MINUTE)
        refused = page.locator(f'{LAST_TURN} .chip[data-state="failed"]')
        expect(refused).to_have_count(4 - TOOL_CALLS_PER_MINUTE)
        for i in range(4 - TOOL_CALLS_PER_MINUTE):
            expect(refused.nth(i)).to_have_attribute("data-error", "rate_limited")
            expect(refused.nth(i)).to_have_text(re.compile(r"^calculator: failed: rate limited, retry in \d+ s$"))
        # Over GATEWAY_MAX_FRAMES_PER_SECOND (20/s, burst 40): one `rate_limited` with retry_after_ms.
        page.evaluate("() => { for (let i = 0; i < 100; i++) state.ws.send('{}'); }")
        expect(page.locator("#notice")).to_contain_text("GATEWAY_MAX_FRAMES_PER_SECOND")
        expect(page.locator("#notice")).to_contain_text(re.compile(r"retry in \d+(\.\d)? s"))
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    finally:
        context.close()


def test_a_reloaded_page_does_not_repeat_a_retry_time_that_has_passed(web_stack: Stack, browser: Browser) -> None:
    """Regression: a `tool.finished` refused over REASONER_TOOL_CALLS_PER_MINUTE carries
    `retry_after_ms`, counted from when it was made. The page reloaded an hour later (its
    frames replayed by `resume`) showed "retry in 12 s" again, as if counted from then; its
    chip now says only that the call was rate limited, the wait being over."""
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    question = "what is 5+5, 6+6, 7+7 and 8+8?"
    url = f"http://127.0.0.1:{web_stack.ports['gateway']}/?user=web-{uuid.uuid4().hex[:8]}"
    try:
        page.goto(url)
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")
        send(page, question)
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        refused = page.locator(f'{LAST_TURN} .chip[data-state="failed"]')
        expect(refused).to_have_count(4 - TOOL_CALLS_PER_MINUTE)
        expect(refused.first).to_have_text(re.compile(r"^calculator: failed: rate limited, retry in \d+ s$"))
        conversation_id = page.locator(".transcript:not([hidden])").get_attribute("data-conversation-id")
        assert conversation_id
        # An hour passes for the conversation's frames (memory's own record of when each was made).
        memory_db = Path(web_stack.env["MEMORY_DATA_DIR"]) / "memory.sqlite3"
        with contextlib.closing(sqlite3.connect(memory_db, timeout=10)) as db, db:
            db.execute(
                "UPDATE frames SET created_at = created_at - 3600 WHERE conversation = "
                "(SELECT id FROM conversations WHERE conversation_id = ?)",
                (conversation_id,),
            )
        page.goto(url)
        page.click(f"#conversations button >> text={question}")
        expect(refused).to_have_count(4 - TOOL_CALLS_PER_MINUTE)
        for i in range(4 - TOOL_CALLS_PER_MINUTE):
            expect(refused.nth(i)).to_have_text("calculator: failed: rate limited")
    finally:
        context.close()


def _page(
    browser: Browser,
    web_stack: Stack,
    *,
    route: Callable[[WebSocketRoute], None] | None = None,
    init_script: str | None = None,
    **context: Any,
) -> tuple[BrowserContext, Page]:
    """A fresh page of a new user, connected; `route` stands between its socket and the
    gateway, `init_script` runs before the page's own."""
    expect.set_options(timeout=WAIT_MS)
    opened = browser.new_context(**context)
    page = opened.new_page()
    page.set_default_timeout(WAIT_MS)
    if init_script is not None:
        page.add_init_script(init_script)
    if route is not None:
        page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    page.goto(f"http://127.0.0.1:{web_stack.ports['gateway']}/?user=web-{uuid.uuid4().hex[:8]}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return opened, page


def test_a_long_word_wraps_inside_its_bubble(web_stack: Stack, browser: Browser) -> None:
    """Regression: a word longer than the bubble (a URL, a hash, a base64 blob) in a message
    or an answer ran out of its bubble and gave the whole transcript a horizontal scrollbar."""
    context, page = _page(browser, web_stack, viewport={"width": 1000, "height": 700})
    try:
        send(page, "x" * 150 + " and " + "y" * 900)  # the echoed answer quotes it (cut at 200)
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        widths = page.evaluate(
            """() => [...document.querySelectorAll('.transcript:not([hidden]) :is(.user, .turn)'),
                      document.querySelector('#transcripts')].map((e) => [e.scrollWidth, e.clientWidth])"""
        )
        assert all(scroll <= client for scroll, client in widths), widths
    finally:
        context.close()


def test_the_newest_answer_comes_into_view_in_a_long_conversation(web_stack: Stack, browser: Browser) -> None:
    """Regression: once a conversation was taller than the window, a new answer streamed below
    its bottom edge and the transcript stayed where it was: the user saw nothing happen."""
    context, page = _page(browser, web_stack, viewport={"width": 1000, "height": 600})
    try:
        send(page, "\n".join(f"line {n}" for n in range(1, 61)))  # one message taller than the window
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        expect(page.locator(LAST_TURN)).to_be_in_viewport()
        send(page, "what is 37*91?")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        expect(page.locator(f"{LAST_TURN} .answer")).to_contain_text("3367")
        expect(page.locator(LAST_TURN)).to_be_in_viewport()
    finally:
        context.close()


def test_missing_frames_are_fetched_again(web_stack: Stack, browser: Browser) -> None:
    """Regression: the page ignored a `seq` that jumped and a `resume_required` error (the
    gateway could not fetch what a socket missed during a broker outage): the frames in
    between never came, so a tool chip stayed "running" and a finished turn "working…" for
    ever. It now resumes from the last `seq` it has. The frames are lost on the way to the
    page (a route between the page and the real gateway)."""
    lost: list[str] = []

    def route(socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "tool.finished" and "tool.finished" not in lost:
                lost.append("tool.finished")  # the next frame's seq jumps
                return
            if frame.get("type") == "turn.completed" and frame["text"] == "1 2 3" and "turn.completed" not in lost:
                lost.append("turn.completed")  # the last frame: no later seq shows the gap
                message = json.dumps(
                    {
                        "type": "error",
                        "code": "resume_required",
                        "conversation_id": frame["conversation_id"],
                        "message": "frames of this conversation were missed: send resume",
                    }
                )
            socket.send(message)

        server.on_message(from_server)

    context, page = _page(browser, web_stack, route=route)
    try:
        send(page, "what is 37*91?")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        expect(page.locator(f'{LAST_TURN} .chip[data-tool="calculator"]')).to_have_attribute("data-state", "done")
        send(page, "count to 3")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        expect(page.locator(f"{LAST_TURN} .answer")).to_have_text("1 2 3")
        assert lost == ["tool.finished", "turn.completed"]
    finally:
        context.close()


def test_a_drop_before_the_first_message_is_accepted_leaves_the_page_usable(web_stack: Stack, browser: Browser) -> None:
    """Regression: the socket dropped after a new conversation's first message was sent and
    before its `message.accepted` came. The page waited for that frame for ever: every later
    send said "wait: the new conversation is starting" (until "New conversation" was clicked)
    and the bubble stayed as if sent. It now marks the bubble not confirmed, says what to do
    (the message may have started a conversation: the list shows it; it is not sent again,
    which could run the turn twice), and sends the next message. The route between the page
    and the real gateway holds back the `message.accepted` and closes the page's socket."""
    dropped: list[str] = []

    def route(socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if json.loads(message).get("type") == "message.accepted" and not dropped:
                dropped.append("message.accepted")
                socket.close()  # the page's socket drops; the server's side closes with it
                return
            socket.send(message)

        server.on_message(from_server)

    context, page = _page(browser, web_stack, route=route)
    try:
        send(page, "what is 37*91?")
        first = page.locator(".transcript:not([hidden]) .user").first
        expect(first).to_have_attribute("data-state", "unconfirmed")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open")  # reconnected
        expect(page.locator("#notice")).to_contain_text("may or may not have started a conversation")
        # It was accepted (the route held back only its confirmation): the list shows it.
        expect(page.locator("#conversations .title")).to_have_text(["what is 37*91?"])
        send(page, "count to 3")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "completed")
        expect(page.locator(f"{LAST_TURN} .answer")).to_have_text("1 2 3")
        expect(page.locator(".transcript:not([hidden]) .user")).to_have_count(1)  # the unconfirmed one left
        expect(page.locator(".transcript:not([hidden]) .user")).to_have_attribute("data-accepted", "true")
        expect(page.locator("#conversations .title")).to_have_text(["count to 3", "what is 37*91?"])
        assert dropped == ["message.accepted"]
    finally:
        context.close()


def test_the_approval_dialog_closes_at_its_deadline(web_stack: Stack, browser: Browser) -> None:
    """Regression: the approval dialog stayed open past `expires_in_ms` (it closed only on
    `tool.finished`), so an Approve after the deadline got `approval_expired`; and a replayed
    `tool.approval_required` with 0 ms left opened it too. It now closes at the deadline,
    its chip saying the approval expired, and does not open for an expired one. The route
    between the page and the real gateway shortens the deadline (the reasoner's is 120 s)."""
    deadlines = [1500, 0]  # ms left in the first and in the second `tool.approval_required`

    def route(socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "tool.approval_required" and deadlines:
                frame["expires_in_ms"] = deadlines.pop(0)
                message = json.dumps(frame)
            socket.send(message)

        server.on_message(from_server)

    counting = (
        "window.dialogsOpened = 0; const showModal = HTMLDialogElement.prototype.showModal;"
        "HTMLDialogElement.prototype.showModal = function () { window.dialogsOpened++; showModal.call(this); };"
    )
    context, page = _page(browser, web_stack, route=route, init_script=counting)
    dialog = page.locator("#approval")
    chip = page.locator(f'{LAST_TURN} .chip[data-tool="workspace_write"]')
    try:
        send(page, 'save "2+2=4" to notes.txt')
        expect(dialog).to_be_visible()
        expect(dialog).to_be_hidden()  # at the deadline, nobody having answered
        expect(chip).to_have_text("workspace_write: approval expired: not run")
        expect(page.locator("#notice")).to_contain_text("No answer in time")
        page.click(f"{LAST_TURN} .cancel")  # the reasoner would wait its own 120 s
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "failed")

        page.click("#new-conversation")
        send(page, 'save "3+3=6" to notes.txt')
        expect(chip).to_have_text("workspace_write: approval expired: not run")
        assert page.evaluate("window.dialogsOpened") == 1  # only the first one's
        expect(dialog).to_be_hidden()
        page.click(f"{LAST_TURN} .cancel")
        expect(page.locator(LAST_TURN)).to_have_attribute("data-state", "failed")
        assert deadlines == []
    finally:
        context.close()
