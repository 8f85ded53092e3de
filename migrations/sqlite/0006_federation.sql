-- Workload identity federation: issuers whose tokens asapd accepts in
-- place of a client secret, and the federated identities bound to each
-- caller. Both only add tables, so older replicas share the schema.

CREATE TABLE issuers (
    name               TEXT PRIMARY KEY,
    issuer             TEXT NOT NULL UNIQUE,   -- the tokens' exact `iss`
    jwks_uri           TEXT,                   -- NULL: OIDC Discovery
    ca_pem             TEXT,                   -- extra trust anchors, PEM
    audiences          TEXT NOT NULL,          -- JSON array, never empty
    max_token_age_secs INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE federated_bindings (
    caller   TEXT NOT NULL REFERENCES callers(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    issuer   TEXT NOT NULL REFERENCES issuers(name),
    subject  TEXT NOT NULL,
    claims   TEXT NOT NULL,                    -- JSON object, may be {}
    PRIMARY KEY (caller, position)
);
CREATE INDEX federated_bindings_by_identity ON federated_bindings (issuer, subject);
