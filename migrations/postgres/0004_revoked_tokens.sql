-- Revoked token ids (RFC 7009, admin revocation). A row lives until the
-- token's own `exp` (Unix seconds) has passed: after that the token is
-- refused anyway, and the pruning job deletes it. Every replica keeps the
-- live rows in memory, so introspection never reads this table per call.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
