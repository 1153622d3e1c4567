"""A second stack whose offline model streams slowly enough (30 ms a chunk) to act on a turn
while it runs: cancel it, drop the socket mid-answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack


@pytest.fixture(scope="session")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("slowstack")), OFFLINE_MODEL_CHUNK_DELAY_MS="30")
    try:
        s.start_all()
        yield s
    finally:
        s.close()
