-- no-transaction
-- Only `token.issued` records have a jti: a partial index stays small.
-- CONCURRENTLY, outside a transaction: a plain CREATE INDEX would block
-- the audit writer, and with it every token issued, while it reads a
-- large audit table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_events_jti ON audit_events (jti) WHERE jti IS NOT NULL;
