-- Tollgate schema v1. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Ids are canonical text, times are unix seconds (BIGINT), binary values are base64 text.

CREATE TABLE instance_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    -- HMAC-SHA-256 of the token under the instance's token-hash key, hex. Never the token.
    token_hash TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_project ON api_tokens (project_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    alg           TEXT NOT NULL,
    state         TEXT NOT NULL,
    -- The private key or shared secret, sealed with AES-256-GCM under the instance's
    -- key-encryption key, with the kid as associated data. Base64.
    sealed_secret TEXT NOT NULL,
    -- Public key bytes (base64) for asymmetric keys; NULL for shared secrets.
    public_key    TEXT,
    created_at    BIGINT NOT NULL,
    not_after     BIGINT
);
CREATE INDEX signing_keys_project ON signing_keys (project_id);
