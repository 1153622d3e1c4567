"""The `agentry` terminal client, driven through a pseudo-terminal as a person would."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pexpect
import pytest
from agentry_client import AgentryClient
from agentry_shared.contracts.frames import TurnCompleted, TurnFailed

from tests.stack import Stack

pytestmark = pytest.mark.e2e

AGENTRY = str(Path(sys.executable).parent / "agentry")
# The client under test is the one on this run's path (a worktree's, say), not only the
# venv's installed copy.
PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def chat(stack: Stack, user: str, state: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn[str]:
    full_env = {"XDG_STATE_HOME": str(state), "PATH": "/usr/bin:/bin", "TERM": "xterm", **PYTHONPATH, **(env or {})}
    child = pexpect.spawn(
        AGENTRY,
        ["chat", "--url", stack.ws_url, "--user", user, *args],
        env=full_env,
        encoding="utf-8",
        codec_errors="replace",  # the terminal echoes what is typed, valid UTF-8 or not
        timeout=30,
    )
    child.expect_exact("you> ")
    return child


def leave(child: pexpect.spawn[str]) -> None:
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def ask(
    stack: Stack, user: str, state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTRY, "ask", "--url", stack.ws_url, "--user", user, *args],
        env={"XDG_STATE_HOME": str(state), "PATH": "/usr/bin:/bin", **PYTHONPATH, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_chat_streams_the_answer_with_tool_lines_and_continues_later(slow_stack: Stack, tmp_path: Path) -> None:
    child = chat(slow_stack, "cli-1", tmp_path)
    shown = child.logfile_read = io.StringIO()  # all of the turn's output, not just its tail
    child.sendline("what is 37*91?")
    child.expect_exact("⚙ calculator… done")
    child.expect_exact("3367")
    child.expect_exact("you> ")
    assert "[reasoning]" not in shown.getvalue()
    leave(child)
    # --continue picks the conversation up again (the model sees the earlier exchange).
    child = chat(slow_stack, "cli-1", tmp_path, "--continue")
    child.sendline("what was my previous question?")
    child.expect_exact('You previously asked: "what is 37*91?"')
    child.expect_exact("you> ")
    child.sendline("/new")
    child.expect_exact("new conversation")
    child.sendline("what was my previous question?")
    child.expect_exact("There is no previous message")  # a new conversation
    child.expect_exact("you> ")
    leave(child)


def test_cancel_stops_a_long_turn(slow_stack: Stack, tmp_path: Path) -> None:
    child = chat(slow_stack, "cli-2", tmp_path)
    child.sendline("count to 200")
    child.expect(r"\b5 6 7\b")
    child.sendline("/cancel")
    child.expect_exact("turn failed: cancelled")
    assert "200" not in (child.before or "")  # what streamed between the cancel and the failure
    child.expect_exact("you> ")
    leave(child)


def test_an_approval_answered_y_runs_the_destructive_tool(slow_stack: Stack, tmp_path: Path) -> None:
    child = chat(slow_stack, "cli-3", tmp_path)
    child.sendline('save "hello from the terminal" to cli.txt')
    child.expect_exact("workspace_write")
    child.expect_exact("Approve? [y/N] ")
    child.sendline("y")
    child.expect_exact("⚙ workspace_write… done")
    child.expect_exact("I saved")
    child.expect_exact("you> ")
    child.sendline("read cli.txt")
    child.expect_exact("hello from the terminal")
    child.expect_exact("you> ")
    leave(child)


def test_ask_prints_the_answer_and_exits_0(slow_stack: Stack, tmp_path: Path) -> None:
    done = ask(slow_stack, "cli-4", tmp_path, "what is 37*91?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "37*91 = 3367."
    again = ask(slow_stack, "cli-4", tmp_path, "--continue", "what was my previous question?")
    assert again.returncode == 0 and "37*91" in again.stdout


def test_ask_exits_non_zero_with_the_error_on_stderr_when_the_turn_fails(slow_stack: Stack, tmp_path: Path) -> None:
    failed = ask(slow_stack, "cli-5", tmp_path, "[[model-error]] what is 2+2?")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "turn failed: model_unavailable" in failed.stderr


def test_ask_json_prints_one_frame_a_line(slow_stack: Stack, tmp_path: Path) -> None:
    import json

    done = ask(slow_stack, "cli-6", tmp_path, "--json", "what is 6*7?")
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert frames[0]["type"] == "message.accepted" and frames[-1]["type"] == "turn.completed"
    assert "42" in frames[-1]["text"]


def test_ask_without_a_gateway_exits_3(tmp_path: Path) -> None:
    done = subprocess.run(
        [AGENTRY, "ask", "--url", "ws://127.0.0.1:9/ws", "hi"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 3 and "cannot connect" in done.stderr


# Escape sequences a model (or the tool output it quotes) could send: retitle the window
# (OSC 0), clear the screen, conceal text, move the cursor back over earlier text, ring the bell.
HOSTILE = "look \x1b]0;PWNED\x07 \x1b[2J \x1b[8mhidden\x1b[0m \x9b2J x\x08\x08y"
RAW_CONTROLS = ("\x1b]", "\x1b[2J", "\x1b[8m", "\x9b", "\x07", "\x08")


def test_escape_sequences_in_the_answer_are_shown_not_obeyed(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: the offline model echoes the message, and the terminal obeyed the escape
    sequences in it (its window retitled, its screen cleared, text hidden). They are now
    shown as visible symbols (ESC as ␛), in `chat` and in `ask`."""
    done = ask(slow_stack, "cli-7", tmp_path, HOSTILE)
    assert done.returncode == 0, done.stderr
    assert not [c for c in RAW_CONTROLS if c in done.stdout], repr(done.stdout)
    assert "␛]0;PWNED␇" in done.stdout and "hidden" in done.stdout
    child = chat(slow_stack, "cli-7", tmp_path)
    child.sendline("say " + HOSTILE.replace("\x08", ""))  # no backspace: the terminal's line editing takes it
    child.expect_exact('You said: "say look ')  # the answer (the line typed is echoed raw by the terminal)
    child.expect_exact("you> ")
    answer = child.before or ""
    assert not [c for c in RAW_CONTROLS if c in answer], repr(answer)
    assert "␛]0;PWNED␇" in answer and "␛[8mhidden" in answer
    leave(child)


def test_a_terminal_that_is_not_utf_8_gets_the_answer_not_a_traceback(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: on a terminal whose encoding lacks a character of the answer (an ASCII or
    Latin-1 locale), `ask` died with UnicodeEncodeError after the turn had completed, and
    `chat` at its first tool line (⚙). Such characters now print as `?`."""
    ascii_only = {"PYTHONIOENCODING": "ascii"}
    done = ask(slow_stack, "cli-8", tmp_path, "say 你好 and café", env=ascii_only)
    assert done.returncode == 0, done.stderr
    assert 'You said: "say ?? and caf?"' in done.stdout
    child = chat(slow_stack, "cli-8", tmp_path, env=ascii_only)
    child.sendline("what is 37*91?")
    child.expect_exact("? calculator? done")  # ⚙ and … are not ASCII
    child.expect_exact("3367")
    child.expect_exact("you> ")
    leave(child)


def test_ctrl_c_cancels_the_running_turn_and_the_chat_goes_on(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: Ctrl-C in the middle of an answer ended `agentry chat` (exit 130) and left
    the turn running on the server to its end. It now cancels the turn, and the chat goes on."""
    child = chat(slow_stack, "cli-9", tmp_path)
    child.sendline("count to 300")
    child.expect(r"\b5 6 7\b")
    child.sendintr()
    child.expect_exact("turn failed: cancelled")
    child.expect_exact("you> ")
    child.sendline("what is 37*91?")  # the same conversation goes on
    child.expect_exact("3367")
    child.expect_exact("you> ")
    leave(child)


async def test_ctrl_c_in_ask_cancels_the_turn(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: Ctrl-C ended `agentry ask` but not its turn, which ran on to the end."""
    env = {"XDG_STATE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **PYTHONPATH}
    child = pexpect.spawn(
        AGENTRY,
        ["ask", "--json", "--url", slow_stack.ws_url, "--user", "cli-10", "count to 300"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r'"type": "message.accepted".*?"conversation_id": "(\w+)"')
    accepted = child.match
    assert isinstance(accepted, re.Match)
    conversation_id = accepted.group(1)
    child.expect_exact('"message.delta"')
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    async with AgentryClient(slow_stack.ws_url, user="cli-10") as client:
        await client.resume(conversation_id, 0)
        async with asyncio.timeout(30):
            async for frame in client.frames():
                if isinstance(frame, TurnCompleted | TurnFailed):
                    break
    assert isinstance(frame, TurnFailed) and frame.error.code == "cancelled", frame


def test_a_dumb_terminal_gets_no_escape_sequences(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: with TERM=dumb (Emacs' shell, a serial console) `agentry chat` still drew
    its spinner and dim notes with escape sequences, shown there as garbage (`^[[K`)."""
    child = chat(slow_stack, "cli-11", tmp_path, env={"TERM": "dumb"})
    shown = child.logfile_read = io.StringIO()
    child.sendline("what is 37*91?")
    child.expect_exact("⚙ calculator… done")
    child.expect_exact("3367")
    child.expect_exact("you> ")
    leave(child)
    assert "\x1b" not in (child.before or "") + shown.getvalue()


# Python reads stdin with errors="surrogateescape" in the C locale, "strict" when told an encoding.
@pytest.mark.parametrize("locale", [{}, {"PYTHONIOENCODING": "utf-8"}], ids=["c-locale", "strict-utf-8"])
def test_a_line_that_is_not_valid_text_is_refused_and_the_chat_goes_on(
    slow_stack: Stack, tmp_path: Path, locale: dict[str, str]
) -> None:
    """Regression: a line of bytes the terminal's encoding cannot decode (Latin-1 typed into
    a UTF-8 terminal) ended `agentry chat` with a traceback, or, read strictly, killed its
    input reader so that it waited for ever. The line is now refused with a note."""
    child = chat(slow_stack, "cli-12", tmp_path, env=locale)
    os.write(child.child_fd, b"caf\xe9 au lait\n")  # Latin-1 é: no UTF-8
    child.expect_exact("not sent")
    child.expect_exact("you> ")
    child.sendline("what is 37*91?")
    child.expect_exact("3367")
    child.expect_exact("you> ")
    leave(child)


def test_conversations_lists_them_to_pick_one_for_conversation(slow_stack: Stack, tmp_path: Path) -> None:
    """Regression: `agentry` had no way to list a user's conversations: `--conversation`
    wanted an id only `--json` output or the web page showed. `agentry conversations`
    prints id, last activity and title, the most recently active first."""
    user = f"cli-list-{uuid.uuid4().hex[:8]}"
    empty = conversations(slow_stack, user, tmp_path)
    assert empty.returncode == 0 and empty.stdout == "" and "no conversations yet" in empty.stderr
    assert ask(slow_stack, user, tmp_path, "what is 37*91?").returncode == 0
    assert ask(slow_stack, user, tmp_path, "count to 3").returncode == 0
    listed = conversations(slow_stack, user, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, listed.stdout
    row = re.compile(r"^(\S+)  \d{4}-\d\d-\d\d \d\d:\d\d  (.+)$")
    rows = [row.match(line) for line in lines]
    assert all(rows), lines
    assert [m.group(2) for m in rows if m] == ["count to 3", "what is 37*91?"]
    picked = next(m.group(1) for m in rows if m and m.group(2) == "what is 37*91?")
    again = ask(slow_stack, user, tmp_path, "--conversation", picked, "what was my previous question?")
    assert again.returncode == 0 and 'You previously asked: "what is 37*91?"' in again.stdout
    as_json = conversations(slow_stack, user, tmp_path, "--json", "--limit", "1")
    assert [json.loads(line)["title"] for line in as_json.stdout.splitlines()] == ["what is 37*91?"]


def conversations(stack: Stack, user: str, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTRY, "conversations", "--url", stack.ws_url, "--user", user, *args],
        env={"XDG_STATE_HOME": str(state), "PATH": "/usr/bin:/bin", **PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=60,
    )
