"""Who should hold which partition: a pure function of the live members' ids.

Every replica computes it from the same member list and so reaches the same answer
without talking to the others. Rendezvous (highest random weight) hashing gives each
(member, partition) pair a stable score; pairs are taken best score first, each member up
to its quota. The quotas make the split exact (every member holds floor(P/N) or
ceil(P/N) partitions: plain rendezvous hashing is only balanced on average, and with 8
partitions over 3 members it can give one member half), and the stable scores keep
movement small: a member that joins takes mostly partitions on which it scores best, and
the others keep theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(member: str, partition: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    digest = hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(members: Iterable[str], partitions: int) -> dict[str, frozenset[int]]:
    """Partition numbers per member; every partition has exactly one member (if any)."""
    names = sorted(set(members))
    if not names:
        return {}
    base, extra = divmod(partitions, len(names))
    pairs = sorted(
        ((score(m, p), m, p) for m in names for p in range(partitions)),
        reverse=True,
    )
    held: dict[str, set[int]] = {m: set() for m in names}
    owner: dict[int, str] = {}
    at_ceiling = 0  # members already holding base + 1: only `extra` of them may
    for _, member, partition in pairs:
        if partition in owner:
            continue
        count = len(held[member])
        if count > base or (count == base and at_ceiling >= extra):
            continue
        if count == base:
            at_ceiling += 1
        held[member].add(partition)
        owner[partition] = member
        if len(owner) == partitions:
            break
    return {m: frozenset(ps) for m, ps in held.items()}


def owner_of(assignment: dict[str, frozenset[int]], partition: int) -> str | None:
    for member, held in assignment.items():
        if partition in held:
            return member
    return None
