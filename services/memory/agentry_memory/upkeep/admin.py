"""`agentry-memory-admin`: the operator's path to what no RPC hands out.

Reasoning traces are never returned to end users (no memory request reads them); an
operator reads them here, on the machine or pod that has the store's configuration, and
every read is logged. Erasure deletes everything stored about a user. Both work directly
on the configured store (MONGODB_URL, else the SQLite file in MEMORY_DATA_DIR, which
the running service may keep open: SQLite's lock makes the two take turns). Erasure then
takes the user's dead letters out of `<ns>.dead.handled` on the broker (AMQP_URL,
AGENTRY_NAMESPACE): memory keeps there every dead letter it handled, turn texts and frames
included, for 14 days.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence

import aio_pika
from agentry_shared.dead_letters import purge
from agentry_shared.logs import setup_logging
from agentry_shared.settings import CommonSettings, MemorySettings
from agentry_shared.topology import Topology

from agentry_memory.main import make_store
from agentry_memory.store import Store
from agentry_memory.store.errors import NotFound

log = logging.getLogger("agentry_memory.admin")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="agentry-memory-admin", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    reasoning = commands.add_parser("reasoning", help="print a turn's reasoning, one JSON line per step")
    erase = commands.add_parser("erase-user", help="delete everything stored about a user; prints the counts")
    for command in (reasoning, erase):
        command.add_argument("--tenant", required=True)
        command.add_argument("--user", required=True)
    reasoning.add_argument("--turn", required=True)
    return top


async def run(store: Store, args: argparse.Namespace, settings: CommonSettings | None = None) -> int:
    """`settings`: the broker and namespace whose dead letters erasure purges (None: the
    store alone, as in the store's own tests)."""
    await store.open()
    try:
        if args.command == "reasoning":
            try:
                steps = await store.reasoning_audit(args.tenant, args.user, args.turn)
            except NotFound as exc:
                print(f"not found: {exc}", file=sys.stderr)
                return 1
            # WARNING, so the audit trail survives any LOG_LEVEL an operator picks.
            log.warning(
                "reasoning read by an operator",
                extra={"tenant_id": args.tenant, "user_id": args.user, "turn_id": args.turn, "operator": _operator()},
            )
            for step in steps:
                print(json.dumps({"step": step.step, "recorded_at": step.recorded_at, "text": step.text}))
            return 0
        counts = await store.erase_user(args.tenant, args.user)
        failed = None
        if settings is not None:
            try:
                counts["dead_letters"] = await purge_dead_letters(settings, args.tenant, args.user)
            except Exception as exc:  # the store's part is done; a second run does the rest
                failed = f"the store is erased, but not the dead letters ({exc!r}): run erase-user again"
        log.warning(
            "user erased by an operator",
            extra={"tenant_id": args.tenant, "user_id": args.user, "operator": _operator(), "deleted": counts},
        )
        print(json.dumps(counts))
        if failed is not None:
            print(failed, file=sys.stderr)
            return 1
        return 0
    finally:
        await store.close()


async def purge_dead_letters(settings: CommonSettings, tenant_id: str, user_id: str) -> int:
    """The user's letters out of `<ns>.dead.handled`, the others kept in order (none lost
    if this dies midway: agentry_shared.dead_letters.purge). Those still in `<ns>.dead`
    are memory's to handle: it checks the erasure and takes them out once kept."""
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            return await purge(
                channel,
                topology.handled_dead_letter_queue,
                topology.handled_dead_letter_exchange,
                tenant_id,
                user_id,
            )
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0  # no memory has kept a dead letter in this namespace


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = MemorySettings()
    setup_logging("memory-admin", settings.log_level)
    return asyncio.run(run(make_store(settings), args, settings))


def entry() -> None:
    sys.exit(main())
