-- Per-project Centrifugo server API keys. The key alone names its project (it is sent as
-- `X-API-Key` with no project id beside it), so it is found by its hash across all projects:
-- the hash is unique, and its UNIQUE constraint is the lookup index.

CREATE TABLE server_api_keys (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    -- HMAC-SHA-256 of the key under a key derived from the master key, hex. Never the key.
    key_hash   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX server_api_keys_project ON server_api_keys (project_id);
