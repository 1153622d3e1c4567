"""The SQLite store's tables: each UNIQUE key is the idempotency of one kind of write.

`SCHEMA` is the current shape, created on a fresh file. A file written by an earlier
release is first brought up to date by `MIGRATIONS` (only ADD COLUMN and UPDATE, so an
old file keeps every row), then `SCHEMA` adds what is missing (new tables and indexes,
all IF NOT EXISTS). `PRAGMA user_version` says which release wrote the file.
"""

from __future__ import annotations

# Bumped, with an entry in MIGRATIONS, whenever the tables change.
SCHEMA_VERSION = 5

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
-- MEMORY_MAX_CONVERSATIONS_PER_USER counts a user's conversations on each creation.
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (tenant_id, user_id);
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
    tokens INTEGER NOT NULL DEFAULT 0,  -- tokens.message_tokens: the window's budget is summed from it
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
    created_at REAL NOT NULL DEFAULT 0,  -- reasoning is kept MEMORY_REASONING_RETENTION_DAYS
    PRIMARY KEY (turn, step)
);
CREATE INDEX IF NOT EXISTS reasoning_by_age ON reasoning (created_at);
CREATE TABLE IF NOT EXISTS tool_calls (
    turn INTEGER NOT NULL REFERENCES turns(id),
    call_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    result TEXT,  -- the ToolCompleted as JSON once done; the first one is kept
    completed_at REAL,
    PRIMARY KEY (turn, call_id)
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    turn_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    requested_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | approved | denied | expired
    decided_at REAL,
    args_sha256 TEXT,  -- frames.arguments_sha256(arguments); NULL: asked before version 4
    UNIQUE (conversation, turn_id, call_id)
);
-- The gateway decides by turn and call (turn ids are unique, the conversation is checked).
CREATE INDEX IF NOT EXISTS approvals_by_turn ON approvals (turn_id, call_id);
-- One row per user and tool: the current fixed window and the calls counted in it.
CREATE TABLE IF NOT EXISTS tool_tokens (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    window_start REAL NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, tool)
);
-- Turn budgets: one row per user (user_id '' for the whole tenant) and counter ('turns' in
-- the current minute, 'tokens' of the current UTC day): the current window and its count.
CREATE TABLE IF NOT EXISTS budget_counts (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    counter TEXT NOT NULL,
    window_start REAL NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, counter)
);
-- Turns the gateway admitted: the concurrent ones are those not finished yet.
CREATE TABLE IF NOT EXISTS turn_admissions (
    turn_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    admitted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turn_admissions_by_user ON turn_admissions (tenant_id, user_id, admitted_at);
CREATE TABLE IF NOT EXISTS summaries (
    conversation INTEGER PRIMARY KEY REFERENCES conversations(id),
    text TEXT NOT NULL,
    through_turn INTEGER NOT NULL,  -- turns 1..through_turn are in it
    tokens INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
-- Facts and tasks belong to a user, across conversations. `key` is knowledge.fact_key: the
-- same fact told twice is one row.
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    owner TEXT NOT NULL,  -- sqlite.facts.owner_token(tenant, user): the FTS filter
    key TEXT NOT NULL,
    text TEXT NOT NULL,
    category TEXT NOT NULL,
    conversation_id TEXT,
    turn_id TEXT,
    created_at REAL NOT NULL,
    confirmed_at REAL NOT NULL,
    UNIQUE (tenant_id, user_id, key)
);
CREATE INDEX IF NOT EXISTS facts_by_confirmation ON facts (tenant_id, user_id, confirmed_at);
-- Full text over the facts, kept in step by triggers. The owner column makes FTS intersect
-- a user's posting list with the query's instead of filtering every user's matches.
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(
    owner, text, content='facts', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS facts_fts_insert AFTER INSERT ON facts BEGIN
    INSERT INTO facts_fts (rowid, owner, text) VALUES (new.id, new.owner, new.text);
END;
CREATE TRIGGER IF NOT EXISTS facts_fts_delete AFTER DELETE ON facts BEGIN
    INSERT INTO facts_fts (facts_fts, rowid, owner, text) VALUES ('delete', old.id, old.owner, old.text);
END;
CREATE TRIGGER IF NOT EXISTS facts_fts_update AFTER UPDATE OF text ON facts BEGIN
    INSERT INTO facts_fts (facts_fts, rowid, owner, text) VALUES ('delete', old.id, old.owner, old.text);
    INSERT INTO facts_fts (rowid, owner, text) VALUES (new.id, new.owner, new.text);
END;
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,  -- open | in_progress | blocked | done
    progress TEXT NOT NULL DEFAULT '',
    conversation_id TEXT,
    turn_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (tenant_id, user_id, key)
);
CREATE INDEX IF NOT EXISTS tasks_by_update ON tasks (tenant_id, user_id, updated_at);
-- The one record kept of an erased user: when, so a turn accepted before it is refused.
CREATE TABLE IF NOT EXISTS erasures (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    erased_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
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
    # Version 3: approvals, rate limits, summaries, facts and tasks are new tables (SCHEMA
    # creates them); messages get their token count, reasoning its time.
    3: [
        "ALTER TABLE messages ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0",
        "UPDATE messages SET tokens = agentry_tokens(body)",  # a Python function, sqlite.base
        "ALTER TABLE reasoning ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
        # Reasoning kept from before ages from the upgrade.
        "UPDATE reasoning SET created_at = (julianday('now') - 2440587.5) * 86400.0",
    ],
    # Version 4: an approval keeps the digest of its arguments, and is found by its turn. A
    # file from before version 3 has no approvals yet: the table is made as version 3 made it.
    4: [
        """
        CREATE TABLE IF NOT EXISTS approvals (
            id INTEGER PRIMARY KEY,
            conversation INTEGER NOT NULL REFERENCES conversations(id),
            turn_id TEXT NOT NULL,
            call_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            requested_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            decided_at REAL,
            UNIQUE (conversation, turn_id, call_id)
        )
        """,
        "ALTER TABLE approvals ADD COLUMN args_sha256 TEXT",
        "DROP INDEX IF EXISTS approvals_by_call",
    ],
    # Version 5: erasures is a new table (SCHEMA creates it).
    5: [],
}
