"""`agentry-memory-admin`: the operator's path to what no RPC hands out.

Reasoning traces are never returned to end users (no memory request reads them); an
operator reads them here, on the machine or pod that has the store's configuration, and
every read is logged. Erasure deletes everything stored about a user. Both work directly
on the configured store (MONGODB_URL, else the SQLite file in MEMORY_DATA_DIR, which
the running service may keep open: SQLite's lock makes the two take turns).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence

from agentry_shared.logs import setup_logging
from agentry_shared.settings import MemorySettings

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


async def run(store: Store, args: argparse.Namespace) -> int:
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
        log.warning(
            "user erased by an operator",
            extra={"tenant_id": args.tenant, "user_id": args.user, "operator": _operator(), "deleted": counts},
        )
        print(json.dumps(counts))
        return 0
    finally:
        await store.close()


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = MemorySettings()
    setup_logging("memory-admin", settings.log_level)
    return asyncio.run(run(make_store(settings), args))


def entry() -> None:
    sys.exit(main())
