"""Fixtures shared by the memory tests: a store per backend, scopes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from agentry_memory.embedded import EmbeddedStore
from agentry_memory.store import Store
from agentry_shared.contracts.scope import Scope

# Each backend: how to build it on a fresh location. A MongoDB backend adds itself here.
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "embedded": lambda tmp_path: EmbeddedStore(tmp_path / "data"),
}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory, so a test can close a store and open another on the same data."""
    backend = BACKENDS[request.param]
    return lambda: backend(tmp_path)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def scope() -> Scope:
    return Scope(tenant_id="acme", user_id="alice", conversation_id=f"c-{uuid.uuid4().hex}")
