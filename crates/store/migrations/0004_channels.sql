-- Centrifugo-compatible channel rules: group membership, per-project namespaces, and the
-- keys that verify an application's own user JWTs.

CREATE TABLE group_members (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, kind, group_id, user_id)
);

-- A project's own namespaces; a name shared with a default replaces the default.
CREATE TABLE namespaces (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    rule       TEXT NOT NULL,
    id_format  TEXT NOT NULL,
    token_ttl  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- How to verify an application's user JWTs: found by their exact `iss`.
CREATE TABLE user_auth_keys (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issuer     TEXT NOT NULL UNIQUE,
    audience   TEXT NOT NULL,
    alg        TEXT NOT NULL,
    -- HMAC secrets sealed under the instance key-encryption key; public keys as base64 DER.
    key_data   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
