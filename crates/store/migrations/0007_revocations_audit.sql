-- Revocations and the audit log.
--
-- A revocation refuses one token (`kind = 'token'`, `target` its jti) or every token of a
-- subject issued before `issued_before` (`kind = 'subject'`), until `expire_at`, when every
-- token it could refuse has expired anyway and the row is swept. Every node polls rows
-- created since its last look (`created_ms`, milliseconds: ids are random, and the two
-- databases share no portable sequence), so the poll index leads with it.

CREATE TABLE revocations (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    target        TEXT NOT NULL,
    issued_before BIGINT,
    expire_at     BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL,
    -- Who asked (an API token id, `server_api`, `cli`): never a credential.
    actor         TEXT NOT NULL
);
CREATE INDEX revocations_project ON revocations (project_id, created_ms);
CREATE INDEX revocations_created ON revocations (created_ms);
CREATE INDEX revocations_expire ON revocations (expire_at);

-- The audit log: one row per token minted, refused, refreshed or revoked and per admin
-- change. Columns are a fixed allowlist; nothing here is a token, secret or request body.
-- `project_id` has no foreign key: a refused mint names the project it claimed, which
-- may not exist, and the log outlives a deleted project until retention sweeps it.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    project_id  TEXT,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor       TEXT,
    subject     TEXT,
    token_kind  TEXT,
    jti         TEXT,
    expires_at  BIGINT,
    channels    TEXT,
    detail      TEXT,
    client_addr TEXT,
    request_id  TEXT
);
CREATE INDEX audit_events_project ON audit_events (project_id, at_ms, id);
CREATE INDEX audit_events_subject ON audit_events (project_id, subject, at_ms);
CREATE INDEX audit_events_at ON audit_events (at_ms);
