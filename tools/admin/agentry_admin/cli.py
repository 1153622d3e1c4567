"""`agentry-admin`: the operator's commands. JSON on stdout, JSON log lines on stderr.

    agentry-admin dead list                       every dead letter, handled by memory or not (none is lost)
    agentry-admin dead replay [--index N ...]     back to their original exchange and routing key
    agentry-admin partitions [--seconds 3]        live replicas per role and who owns each partition
    agentry-admin conversations list --user U [--tenant T] [--limit 50]
    agentry-admin conversations export --tenant T --user U --conversation C
    agentry-admin namespace delete --yes          every shared queue and exchange of the namespace

The broker and the namespace come from the services' settings (AMQP_URL, AGENTRY_NAMESPACE,
AGENTRY_PARTITIONS); `--namespace` overrides the name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aio_pika
from agentry_shared.bus import Bus
from agentry_shared.contracts.scope import Scope
from agentry_shared.logs import setup_logging
from agentry_shared.settings import CommonSettings
from agentry_shared.topology import Topology

from agentry_admin import conversations, dead_letters, namespace, partitions

Command = Callable[[argparse.Namespace, CommonSettings, Topology], Coroutine[Any, Any, Any]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentry-admin", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--namespace", help="the namespace (default: AGENTRY_NAMESPACE)")
    sub = p.add_subparsers(dest="area", required=True)
    dead = sub.add_parser("dead", help="the dead letters").add_subparsers(dest="action", required=True)
    dead.add_parser("list", help="list every dead letter, those memory handled too; each goes back in place")
    replay = dead.add_parser("replay", help="republish dead letters where they first died")
    replay.add_argument(
        "--index", type=int, action="append", help="only these (from `dead list`); default: all not handled by memory"
    )
    parts = sub.add_parser("partitions", help="live replicas and partition owners")
    parts.add_argument("--seconds", type=float, default=3.0, help="how long to listen to heartbeats")
    convs = sub.add_parser("conversations", help="a user's conversations").add_subparsers(dest="action", required=True)
    export = convs.add_parser("export", help="one conversation's frames as JSON")
    listed = convs.add_parser("list", help="a user's conversations, the most recently active first")
    for flag in ("--tenant", "--user", "--conversation"):
        export.add_argument(flag, required=flag != "--tenant", default="default" if flag == "--tenant" else None)
    listed.add_argument("--tenant", default="default")
    listed.add_argument("--user", required=True)
    listed.add_argument("--limit", type=int, default=50, help="at most this many (1 to 200)")
    ns = sub.add_parser("namespace", help="the namespace itself").add_subparsers(dest="action", required=True)
    delete = ns.add_parser("delete", help="delete its queues and exchanges")
    delete.add_argument("--yes", action="store_true", help="yes, drop every message they hold")
    delete.add_argument("--pool", action="append", default=[], help="a tool pool beyond the built-in ones")
    return p


async def _dead(args: argparse.Namespace, settings: CommonSettings, topology: Topology) -> Any:
    chosen = set(args.index or []) if args.action == "replay" else set()

    def pick(letter: dead_letters.DeadLetter) -> bool:
        if args.action != "replay":
            return False
        # By default only what memory has not handled: a handled turn has already failed
        # for its user; pick one by its index to send it again all the same.
        return letter.index in chosen if args.index else letter.handled is None

    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        kept, replayed = await dead_letters.walk(channel, topology.dead_letter_queue, pick)
        handled_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            more = await dead_letters.walk(
                handled_channel, topology.handled_dead_letter_queue, pick, start=len(kept) + len(replayed)
            )
        except aio_pika.exceptions.ChannelNotFoundEntity:
            more = ([], [])  # no memory of this version has run in the namespace yet
        kept, replayed = kept + more[0], replayed + more[1]
    if args.action == "list":
        return [letter.summary() for letter in kept]
    return {"replayed": [letter.summary() for letter in replayed], "kept": len(kept)}


async def _partitions(args: argparse.Namespace, settings: CommonSettings, topology: Topology) -> Any:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        members = await partitions.listen(await connection.channel(), topology, args.seconds)
    return partitions.owners(members, topology.partitions)


async def _conversations(args: argparse.Namespace, settings: CommonSettings, topology: Topology) -> Any:
    bus = Bus(settings.amqp_url.get_secret_value(), topology, "admin")
    await bus.connect()
    try:
        if args.action == "list":
            return await conversations.listing(bus, args.tenant, args.user, args.limit)
        return await conversations.export(
            bus, Scope(tenant_id=args.tenant, user_id=args.user, conversation_id=args.conversation)
        )
    finally:
        await bus.close()


async def _namespace(args: argparse.Namespace, settings: CommonSettings, topology: Topology) -> Any:
    if not args.yes:
        raise SystemExit(f"this deletes every queue of {topology.namespace!r} and what they hold: add --yes")
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        deleted = await namespace.delete(connection, topology, [*namespace.POOLS, *args.pool])
    return {"deleted": deleted}


COMMANDS: dict[str, Command] = {
    "dead": _dead,
    "partitions": _partitions,
    "conversations": _conversations,
    "namespace": _namespace,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = CommonSettings()
    setup_logging("admin", settings.log_level)
    if args.namespace:
        settings = settings.model_copy(update={"agentry_namespace": args.namespace})
    topology = Topology.from_settings(settings)
    result: Any = asyncio.run(COMMANDS[args.area](args, settings, topology))
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
