-- Per-caller token buckets shared by every replica: replicas lease small
-- slices of a caller's allowance from its row (src/fleet_limits.rs), so the
-- rate limit holds for the fleet, not for each replica.
CREATE TABLE rate_buckets (
    caller       TEXT PRIMARY KEY REFERENCES callers(name) ON DELETE CASCADE,
    tokens       DOUBLE PRECISION NOT NULL,
    updated_ms   BIGINT NOT NULL,
    -- The quota the bucket was filled under: a changed quota starts full.
    per_second   DOUBLE PRECISION NOT NULL,
    burst        DOUBLE PRECISION NOT NULL,
    last_granted DOUBLE PRECISION NOT NULL
);
