//! The revocation half of the store interface: which tokens of a project are refused
//! before they expire (see `tollgate_token::revocation` for what a target means).

use async_trait::async_trait;
use tollgate_token::ProjectId;
use tollgate_token::revocation::{Revocation, Target};

use crate::StoreError;

/// A revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    pub project_id: ProjectId,
    pub revocation: Revocation,
    /// When it was made, in Unix milliseconds (what nodes poll by).
    pub created_ms: i64,
    /// Who made it: an API token id, `server_api`, `cli` — never a credential.
    pub actor: String,
}

impl RevocationRecord {
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.revocation.target
    }
}

/// Persistence for revocations. Every method is atomic.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Adds a revocation (`NotFound` if there is no such project).
    async fn insert_revocation(&self, record: &RevocationRecord) -> Result<(), StoreError>;

    /// A project's revocations that lapse after `now`, oldest first.
    async fn list_revocations(
        &self,
        project: ProjectId,
        now: i64,
    ) -> Result<Vec<RevocationRecord>, StoreError>;

    /// Deletes one revocation of `project`. `Ok(false)` if it has none with this id.
    async fn delete_revocation(
        &self,
        project: ProjectId,
        id: uuid::Uuid,
    ) -> Result<bool, StoreError>;

    /// Every project's revocations created at or after `since_ms` that lapse after `now`
    /// (what a node polls for), oldest first, at most `limit`.
    async fn revocations_since(
        &self,
        since_ms: i64,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RevocationRecord>, StoreError>;

    /// Deletes revocations that lapsed at or before `now`; returns how many.
    async fn sweep_revocations(&self, now: i64) -> Result<u64, StoreError>;
}
