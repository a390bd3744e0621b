//! The audit log's half of the store interface: append in batches, read back filtered and
//! paginated, sweep by age. Records hold a fixed set of fields, never a secret or body.

use async_trait::async_trait;
use tollgate_token::ProjectId;

use crate::StoreError;

/// One audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Time-ordered (UUID v7), so `(at_ms, id)` pages stably.
    pub id: uuid::Uuid,
    pub at_ms: i64,
    /// The project it concerns; for a refused request, the project it claimed.
    pub project_id: Option<ProjectId>,
    /// What happened, e.g. `token.minted`, `token.refused`, `revocation.created`.
    pub action: String,
    /// `ok`, or why not (`unauthorized`, `forbidden`, `reused`, …).
    pub outcome: String,
    /// Who asked: `api_token:<id>`, `subscriber:<id>`, `server_api`, `cli`, `admin:<id>`.
    pub actor: Option<String>,
    /// The user, member or subscriber the action was about.
    pub subject: Option<String>,
    /// The kind of token minted or refused (`pubsub`, `chat`, `centrifugo`, `sat`, …).
    pub token_kind: Option<String>,
    pub jti: Option<String>,
    /// Expiry of the token minted (Unix seconds).
    pub expires_at: Option<i64>,
    /// Channels granted (a JSON array, bounded) — names, never payloads.
    pub channels: Option<String>,
    /// A JSON object of further allowlisted fields (counts, ids, key ids).
    pub detail: Option<String>,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
}

/// What to read back: one project's events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub project: ProjectId,
    pub action: Option<String>,
    pub subject: Option<String>,
    /// Events at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Events before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Continue after this event (the last of the previous page): `(at_ms, id)`.
    pub after: Option<(i64, uuid::Uuid)>,
    pub limit: u32,
}

/// Persistence for the audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events in one transaction.
    async fn insert_audit_events(&self, events: &[AuditRecord]) -> Result<(), StoreError>;

    /// One page of a project's events, newest first.
    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Deletes events older than `before_ms`; returns how many.
    async fn sweep_audit_events(&self, before_ms: i64) -> Result<u64, StoreError>;
}
