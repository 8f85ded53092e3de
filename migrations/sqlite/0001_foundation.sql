-- Foundation schema: callers, groups, secrets, keys, settings.
-- Timestamps are Unix seconds (UTC); booleans are 0/1 integers so the same
-- queries run on SQLite and PostgreSQL.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE groups (
    name          TEXT PRIMARY KEY,
    audiences     TEXT NOT NULL,            -- JSON array of patterns
    max_lifetime  INTEGER NOT NULL,
    cidrs         TEXT NOT NULL,            -- JSON array
    allow_subject INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE callers (
    name                 TEXT PRIMARY KEY,
    algorithm            TEXT NOT NULL,
    cidrs                TEXT NOT NULL,     -- JSON array
    rate_per_second      INTEGER,
    rate_burst           INTEGER,
    rotation_period_secs INTEGER NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE caller_groups (
    caller     TEXT NOT NULL REFERENCES callers(name) ON DELETE CASCADE,
    group_name TEXT NOT NULL REFERENCES groups(name),
    PRIMARY KEY (caller, group_name)
);
CREATE INDEX caller_groups_by_group ON caller_groups (group_name);

CREATE TABLE caller_secrets (
    id         TEXT PRIMARY KEY,
    caller     TEXT NOT NULL REFERENCES callers(name) ON DELETE CASCADE,
    hash       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX caller_secrets_by_caller ON caller_secrets (caller);

CREATE TABLE keys (
    kid          TEXT PRIMARY KEY,
    caller       TEXT NOT NULL REFERENCES callers(name) ON DELETE CASCADE,
    algorithm    TEXT NOT NULL,
    state        TEXT NOT NULL,
    public_der   BLOB NOT NULL,
    private_enc  BLOB NOT NULL,            -- AES-256-GCM under the master key, kid as AAD
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at   INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX keys_by_caller ON keys (caller);
CREATE UNIQUE INDEX keys_one_active_per_caller ON keys (caller) WHERE state = 'active';

INSERT INTO groups (name, audiences, max_lifetime, cidrs, allow_subject, created_at, updated_at)
VALUES ('admin', '["asapd"]', 3600, '[]', 0, 0, 0),
       ('auditor', '["asapd"]', 3600, '[]', 0, 0, 0);
