"""`agentry`: the terminal client.

    agentry chat [--continue]        a conversation, live (Ctrl-D or /quit leaves)
    agentry ask "what is 37*91?"     prints the answer; exit 1 when the turn fails
    agentry conversations            lists yours (id, last activity, title), for --conversation

Ctrl-C cancels the running turn: `chat` goes on (a second Ctrl-C, or one at the prompt,
leaves), `ask` exits 130.

Exit codes: 0 answered, 1 the turn failed (`turn.failed`, the error on stderr), 2 the
gateway refused a frame (an `error`), 3 no connection (or lost and not resumable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from agentry_shared.contracts.frames import ToolApprovalRequired, TurnCompleted
from websockets.exceptions import InvalidHandshake, InvalidStatus

from agentry_client.chat import HELP, Chat
from agentry_client.client import DEFAULT_URL, AgentryClient
from agentry_client.console import Lines
from agentry_client.errors import AgentryError, ConnectionLost, ServerError
from agentry_client.render import JsonRenderer, TerminalRenderer, printable
from agentry_client.state import State, identity
from agentry_client.turn import Turn

EXIT_OK, EXIT_TURN_FAILED, EXIT_REFUSED, EXIT_NO_CONNECTION = 0, 1, 2, 3
CANCEL_TIMEOUT_SECONDS = 2.0  # how long Ctrl-C waits for the turn's `cancel` to go out


def parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    url = os.environ.get("AGENTRY_URL", DEFAULT_URL)
    connection.add_argument("--url", default=url, help="the gateway's WebSocket URL")
    connection.add_argument("--user", default=os.environ.get("AGENTRY_USER"), help="development identity (?user=NAME)")
    connection.add_argument("--token", default=os.environ.get("AGENTRY_TOKEN"), help="a JWT (default: $AGENTRY_TOKEN)")
    connection.add_argument("--json", action="store_true", help="print every frame as one JSON line (for scripts)")
    common = argparse.ArgumentParser(add_help=False, parents=[connection])
    common.add_argument("--continue", dest="resume_last", action="store_true", help="continue the last conversation")
    common.add_argument("--conversation", help="continue this conversation")
    top = argparse.ArgumentParser(prog="agentry", description="Talk to an Agentry gateway.")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("chat", parents=[common], help="a live conversation", description=HELP)
    ask = commands.add_parser("ask", parents=[common], help="ask one question, print the answer")
    ask.add_argument("text", help="the message")
    ask.add_argument("--yes", action="store_true", help="approve every destructive tool call (default: deny)")
    listing = commands.add_parser(
        "conversations",
        parents=[connection],
        help="list your conversations, the most recently active first",
        description="One line each: id, last activity (local time), title; with --json one JSON object "
        "each. Continue one with `agentry chat --conversation ID`.",
    )
    listing.add_argument("--limit", type=_limit, default=50, help="at most this many (1 to 200, default 50)")
    return top


def _limit(value: str) -> int:
    """`--limit`: the protocol's range (1 to 200), refused here rather than by the gateway."""
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= limit <= 200:
        raise argparse.ArgumentTypeError(f"{limit} is not between 1 and 200")
    return limit


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _tolerant_output()
    try:
        code = asyncio.run(run(args))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


async def run(args: argparse.Namespace) -> int:
    if args.command == "conversations":
        return await conversations(args)
    state = State()
    who = identity(args.user, args.token)
    conversation = args.conversation or (state.last_conversation(args.url, who) if args.resume_last else None)
    renderer = JsonRenderer() if args.json else TerminalRenderer(animate=_capable_terminal())
    client = AgentryClient(
        args.url, token=args.token, user=args.user, on_reconnect=lambda _: renderer.note("(reconnected: resuming)")
    )
    try:
        await client.connect()
    except (OSError, InvalidHandshake, TimeoutError) as error:
        return _no_connection(args.url, error)
    try:

        def remember(conversation_id: str) -> None:
            state.remember(args.url, who, conversation_id)

        if args.command == "chat":
            if not args.json:
                renderer.note(f"agentry chat: {args.url} as {who}. {HELP}")
            lines = Lines()
            chat = Chat(client, lines, renderer, conversation, remember, prompt=_prompt(args.json))
            return await chat.run()
        return await ask(client, args, conversation, remember)
    except ConnectionLost as lost:
        print(printable(f"agentry: {lost}"), file=sys.stderr)
        return EXIT_NO_CONNECTION
    finally:
        await client.close()


async def ask(
    client: AgentryClient, args: argparse.Namespace, conversation: str | None, remember: Callable[[str], None]
) -> int:
    try:
        turn = await client.send(args.text, conversation)
        try:
            await _read(turn, client, args)
        except asyncio.CancelledError:  # Ctrl-C: stop the turn too, not only this program
            with contextlib.suppress(AgentryError, TimeoutError):
                await asyncio.wait_for(turn.cancel(), CANCEL_TIMEOUT_SECONDS)
            raise
    except ServerError as error:
        print(printable(f"agentry: refused: {error}"), file=sys.stderr)
        return EXIT_REFUSED
    if turn.conversation_id:
        remember(turn.conversation_id)
    if not isinstance(turn.end, TurnCompleted):
        failure = turn.end.error if turn.end is not None else None
        reason = f"{failure.code}: {failure.message}" if failure else "no answer"
        print(printable(f"agentry: turn failed: {reason}"), file=sys.stderr)
        return EXIT_TURN_FAILED
    if not args.json:
        print(printable(turn.text))
    return EXIT_OK


async def conversations(args: argparse.Namespace) -> int:
    """Print the user's conversations, one a line: id, last activity, title (or, with --json,
    the `conversations` frame's entries, one JSON object a line)."""
    try:
        async with AgentryClient(args.url, token=args.token, user=args.user) as client:
            listed = await client.list_conversations(args.limit)
    except (OSError, InvalidHandshake, TimeoutError) as error:
        return _no_connection(args.url, error)
    except ServerError as error:
        print(printable(f"agentry: refused: {error}"), file=sys.stderr)
        return EXIT_REFUSED
    except ConnectionLost as lost:
        print(printable(f"agentry: {lost}"), file=sys.stderr)
        return EXIT_NO_CONNECTION
    if args.json:
        for item in listed:
            print(item.model_dump_json())
        return EXIT_OK
    if not listed:
        print("agentry: no conversations yet", file=sys.stderr)
    for item in listed:
        when = datetime.fromtimestamp(item.last_activity_at).strftime("%Y-%m-%d %H:%M")
        title = " ".join(item.title.split()) or "(untitled)"  # one line, whatever it holds
        print(printable(f"{item.conversation_id}  {when}  {title}"))
    return EXIT_OK


async def _read(turn: Turn, client: AgentryClient, args: argparse.Namespace) -> None:
    json_out = JsonRenderer() if args.json else None
    async for frame in turn:
        if json_out is not None:
            json_out.frame(frame)
        if isinstance(frame, ToolApprovalRequired):
            if not args.yes:
                denied = f"agentry: denied {printable(frame.tool)} (pass --yes to approve destructive tools)"
                print(denied, file=sys.stderr)
            await client.approve(frame, bool(args.yes))


def _capable_terminal() -> bool:
    """Whether stdout takes the escape sequences of the spinner and the dim notes: a terminal,
    but not a dumb one (TERM=dumb or unset: Emacs' shell, a serial console), where they show
    as garbage."""
    return sys.stdout.isatty() and os.environ.get("TERM", "dumb") != "dumb"


def _tolerant_output() -> None:
    """A character the terminal's encoding lacks (an ASCII or Latin-1 locale) prints as `?`:
    raising instead would end the client in the middle of an answer."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def _prompt(json_mode: bool) -> Callable[[str], None]:
    def prompt(text: str) -> None:
        if not json_mode:
            sys.stdout.write(text)
            sys.stdout.flush()

    return prompt


def _no_connection(url: str, error: BaseException) -> int:
    if isinstance(error, InvalidStatus):
        print(f"agentry: {url} refused the connection: HTTP {error.response.status_code}", file=sys.stderr)
    else:
        print(f"agentry: cannot connect to {url}: {error}", file=sys.stderr)
    return EXIT_NO_CONNECTION
