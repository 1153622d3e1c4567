"""The assignment every replica computes from the live members: exact shares, small moves."""

from __future__ import annotations

import math

import pytest
from agentry_shared.partitions.assignment import assign

MEMBERS = [1, 2, 3, 5, 8, 13, 21, 34, 50]
PARTITIONS = [64, 100, 256, 1024]


def owners(assignment: dict[str, frozenset[int]]) -> dict[int, str]:
    return {p: member for member, held in assignment.items() for p in held}


def members(n: int) -> list[str]:
    return [f"reasoner-{i:02d}" for i in range(n)]


@pytest.mark.parametrize("partitions", PARTITIONS)
@pytest.mark.parametrize("n", MEMBERS)
def test_every_partition_has_one_owner_and_shares_differ_by_at_most_one(n: int, partitions: int) -> None:
    assignment = assign(members(n), partitions)
    held = [len(ps) for ps in assignment.values()]
    assert sorted(owners(assignment)) == list(range(partitions))
    assert sum(held) == partitions
    assert max(held) - min(held) <= 1
    assert min(held) == partitions // n


@pytest.mark.parametrize("partitions", PARTITIONS)
@pytest.mark.parametrize("n", MEMBERS)
def test_a_join_or_a_leave_moves_little(n: int, partitions: int) -> None:
    """A joiner takes its share; beyond that only a few partitions change hands while the
    ceiling slots (the members holding one more) settle. Hashing modulo the member count,
    by contrast, would move almost every partition."""
    before = assign(members(n), partitions)
    joined = assign([*members(n), "newcomer"], partitions)
    old = owners(before)
    moved = sum(old[p] != owner for p, owner in owners(joined).items())
    share = len(joined["newcomer"])
    assert share >= partitions // (n + 1)
    assert moved <= share + math.ceil(partitions / 6), (moved, share)
    if n > 1:
        left = assign(members(n)[1:], partitions)
        lost = len(before[members(n)[0]])
        moved = sum(old[p] != owner for p, owner in owners(left).items())
        assert moved <= lost + math.ceil(partitions / 6), (moved, lost)


def test_the_same_members_give_the_same_answer_in_any_order() -> None:
    names = members(7)
    assert assign(names, 64) == assign(list(reversed(names)), 64) == assign([*names, names[0]], 64)


def test_no_members_hold_nothing() -> None:
    assert assign([], 64) == {}
