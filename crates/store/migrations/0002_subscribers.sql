-- Subscribers, their addresses, subscriber-token encryption keys, refresh-token families.

CREATE TABLE encryption_keys (
    kid           TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    -- 256-bit AES key sealed under the instance key-encryption key (kid as AAD). Base64.
    sealed_secret TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    not_after     BIGINT
);
CREATE INDEX encryption_keys_project ON encryption_keys (project_id);

CREATE TABLE subscribers (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- What the token API calls `reference`; the CRUD API's `email`. Unique per project.
    reference     TEXT NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    display_name  TEXT,
    job_title     TEXT,
    timezone      TEXT,
    country       TEXT,
    company_name  TEXT,
    -- Argon2id PHC string. Never the password.
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (project_id, reference)
);
CREATE INDEX subscribers_page ON subscribers (project_id, created_at, id);

CREATE TABLE subscriber_addresses (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX subscriber_addresses_subscriber ON subscriber_addresses (subscriber_id);

-- One family per login: every refresh token descended from one token request.
CREATE TABLE token_families (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- NULL for guest tokens, which belong to no subscriber.
    subscriber_id  TEXT REFERENCES subscribers (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);

-- Refresh tokens by id (the token itself is never stored).
CREATE TABLE refresh_tokens (
    jti        TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    parent_jti TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- DPoP proof ids seen recently, so a captured proof cannot be replayed.
CREATE TABLE dpop_proofs (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs (expires_at);
