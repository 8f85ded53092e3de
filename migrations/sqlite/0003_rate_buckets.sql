-- Per-caller token buckets shared by every replica (PostgreSQL). SQLite is
-- one process, whose in-memory limiter is already the fleet's; the table
-- keeps both schemas alike.
CREATE TABLE rate_buckets (
    caller       TEXT PRIMARY KEY REFERENCES callers(name) ON DELETE CASCADE,
    tokens       REAL NOT NULL,
    updated_ms   INTEGER NOT NULL,
    -- The quota the bucket was filled under: a changed quota starts full.
    per_second   REAL NOT NULL,
    burst        REAL NOT NULL,
    last_granted REAL NOT NULL
);
