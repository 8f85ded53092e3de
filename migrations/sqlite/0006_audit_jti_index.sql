-- Only `token.issued` records have a jti: a partial index stays small.
-- (A migration of its own to keep step with PostgreSQL's 0006.)
CREATE INDEX IF NOT EXISTS audit_events_jti ON audit_events (jti) WHERE jti IS NOT NULL;
