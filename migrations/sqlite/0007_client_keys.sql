-- Public keys a caller registered to sign its own client assertions
-- (RFC 7523 private_key_jwt). `id` is the key's RFC 7638 JWK thumbprint;
-- `family` is RSA, P-256 or P-384 and picks the algorithms it verifies.
-- Only the public key is stored: its private half never reaches asapd.
CREATE TABLE client_keys (
    id         TEXT NOT NULL,
    caller     TEXT NOT NULL REFERENCES callers(name) ON DELETE CASCADE,
    family     TEXT NOT NULL,
    spki_der   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (caller, id)
);

-- Client assertion jtis already accepted, per caller, kept until the
-- assertion's `exp` (plus leeway) has passed. The primary key makes the
-- insert that wins the only one, on every replica at once: a replayed
-- assertion conflicts and is refused. Pruned by the used_assertions job.
CREATE TABLE used_assertions (
    caller     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (caller, jti)
);
CREATE INDEX used_assertions_expires ON used_assertions (expires_at);
