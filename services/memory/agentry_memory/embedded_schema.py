"""The embedded store's tables: each UNIQUE key is the idempotency of one kind of write.

`SCHEMA` is the current shape, created on a fresh file. A file written by an earlier
release is first brought up to date by `MIGRATIONS` (only ADD COLUMN and UPDATE, so an
old file keeps every row), then `SCHEMA` adds what is missing (new tables and indexes,
all IF NOT EXISTS). `PRAGMA user_version` says which release wrote the file.
"""

from __future__ import annotations

# Bumped, with an entry in MIGRATIONS, whenever the tables change.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    -- The last seq given out: frames expire, the sequence never restarts.
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    turn_id TEXT NOT NULL UNIQUE,
    turn_index INTEGER NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',  -- queued | running | completed | failed | cancelled
    attempts INTEGER NOT NULL DEFAULT 0,  -- BeginTurn calls
    cancel_requested_at REAL,
    finished_at REAL,
    finished_by TEXT,  -- event_id of the frame that ended it
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
    created_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation, seq),
    UNIQUE (conversation, event_id)
);
CREATE INDEX IF NOT EXISTS frames_by_age ON frames (created_at);
CREATE TABLE IF NOT EXISTS reasoning (
    turn INTEGER NOT NULL REFERENCES turns(id),
    step INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (turn, step)
);
CREATE TABLE IF NOT EXISTS tool_calls (
    turn INTEGER NOT NULL REFERENCES turns(id),
    call_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    result TEXT,  -- the ToolCompleted as JSON once done; the first one is kept
    completed_at REAL,
    PRIMARY KEY (turn, call_id)
);
"""

# MIGRATIONS[v]: the statements that turn a file of version v - 1 into version v.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE conversations ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
        "UPDATE conversations SET last_seq = "
        "(SELECT COALESCE(MAX(seq), 0) FROM frames WHERE frames.conversation = conversations.id)",
        "ALTER TABLE turns ADD COLUMN state TEXT NOT NULL DEFAULT 'queued'",
        "ALTER TABLE turns ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE turns ADD COLUMN cancel_requested_at REAL",
        "ALTER TABLE turns ADD COLUMN finished_at REAL",
        "ALTER TABLE turns ADD COLUMN finished_by TEXT",
        # Turns that already ended get the state their first final frame says.
        """
        WITH final AS (
            SELECT conversation, event_id,
                json_extract(body, '$.turn_id') AS turn_id,
                json_extract(body, '$.type') AS type,
                json_extract(body, '$.error.code') AS code,
                ROW_NUMBER() OVER (PARTITION BY conversation, json_extract(body, '$.turn_id') ORDER BY seq) AS n
            FROM frames WHERE json_extract(body, '$.type') IN ('turn.completed', 'turn.failed')
        )
        UPDATE turns SET
            state = CASE WHEN final.type = 'turn.completed' THEN 'completed'
                WHEN final.code = 'cancelled' THEN 'cancelled' ELSE 'failed' END,
            finished_by = final.event_id,
            finished_at = (julianday('now') - 2440587.5) * 86400.0
        FROM final WHERE final.n = 1 AND final.conversation = turns.conversation AND final.turn_id = turns.turn_id
        """,
        # Frames kept from before count their age from the upgrade.
        "ALTER TABLE frames ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
        "UPDATE frames SET created_at = (julianday('now') - 2440587.5) * 86400.0",
    ],
}
