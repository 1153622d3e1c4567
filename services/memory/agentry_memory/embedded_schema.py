"""The embedded store's tables: each UNIQUE key is the idempotency of one kind of write."""

from __future__ import annotations

# Bumped (with a migration in EmbeddedStore._open) whenever the tables change.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    turn_id TEXT NOT NULL UNIQUE,
    turn_index INTEGER NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (conversation, turn_index)
);
CREATE TABLE IF NOT EXISTS messages (
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    turn_index INTEGER NOT NULL,
    position INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation, turn_index, position)
);
CREATE TABLE IF NOT EXISTS frames (
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation, seq),
    UNIQUE (conversation, event_id)
);
CREATE TABLE IF NOT EXISTS reasoning (
    turn INTEGER NOT NULL REFERENCES turns(id),
    step INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (turn, step)
);
"""
