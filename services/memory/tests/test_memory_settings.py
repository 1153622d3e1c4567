"""What the service reads beyond the shared settings, and which store it picks."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentry_memory.main import make_store
from agentry_memory.settings import service_settings
from agentry_memory.store.mongo import MongoStore
from agentry_memory.store.sqlite import SqliteStore
from agentry_shared.settings import MemorySettings


def test_the_hybrid_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_WINDOW_TOKENS", "4000")
    monkeypatch.setenv("LLM_MODEL", "summariser")
    monkeypatch.setenv("MEMORY_REASONING_RETENTION_DAYS", "7")
    settings = service_settings(MemorySettings(agentry_partitions=3))
    assert (settings.memory_window_tokens, settings.llm_model, settings.memory_reasoning_retention_days) == (
        4000,
        "summariser",
        7.0,
    )
    assert settings.agentry_partitions == 3  # what the caller set is kept
    assert settings.memory_window_messages == 500  # a cap only: the token budget bounds the window
    monkeypatch.setenv("MEMORY_WINDOW_TOKENS", "10")
    with pytest.raises(ValueError, match="memory_window_tokens"):
        MemorySettings()


def test_mongodb_url_selects_the_mongodb_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert isinstance(make_store(MemorySettings(memory_data_dir=tmp_path)), SqliteStore)
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.example:27017")
    monkeypatch.setenv("MONGODB_DATABASE", "agentry_prod")
    store = make_store(MemorySettings())
    assert isinstance(store, MongoStore) and not store.is_open  # connects on open(), not before
    assert (store.url, store.database) == ("mongodb://db.example:27017", "agentry_prod")
