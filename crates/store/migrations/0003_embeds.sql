-- Click-to-call embed keys: public `c2c_…` tokens that mint a short-lived SAT for one
-- address without any other credentials.
CREATE TABLE embed_keys (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    address_id TEXT NOT NULL REFERENCES subscriber_addresses (id) ON DELETE CASCADE,
    -- Keyed hash of the c2c token, hex. Never the token.
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX embed_keys_project ON embed_keys (project_id);
