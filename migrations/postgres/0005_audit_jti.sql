-- The jti and `exp` (Unix seconds) of a `token.issued` record as columns,
-- so that an admin revocation without `expires_at` finds the token's expiry
-- by an index lookup instead of a text scan of the records' JSON `detail`.
-- NULL on every other record, and on records written before this
-- migration or by a replica that does not know the columns yet (expand
-- only: old and new replicas share this schema). Such a jti is kept as
-- long as any token can live, which is never too short.
-- Nullable without a default: PostgreSQL changes only the catalogue.
ALTER TABLE audit_events ADD COLUMN jti TEXT;
ALTER TABLE audit_events ADD COLUMN jti_expires_at BIGINT;
