//! The server-API-key half of the store interface: per-project keys that authenticate
//! Centrifugo server API calls, kept only as keyed hashes.

use async_trait::async_trait;
use tollgate_token::{ProjectId, UnixTime};

use crate::StoreError;

/// A server API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    pub name: String,
    /// The keyed hash (not the key).
    pub key_hash: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Persistence for server API keys. Every method is atomic.
#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// Adds a key (`NotFound` if there is no such project, `Conflict` if the hash is taken).
    async fn insert_server_key(&self, key: &ServerKeyRecord) -> Result<(), StoreError>;

    /// A project's server API keys, revoked ones included, oldest first.
    async fn list_server_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<ServerKeyRecord>, StoreError>;

    /// Marks a key of `project` revoked. `Ok(false)` if the project has no such key or it
    /// was already revoked.
    async fn revoke_server_key(
        &self,
        project: ProjectId,
        id: uuid::Uuid,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// The unrevoked key whose hash is `key_hash`, whichever project it belongs to.
    async fn active_server_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<ServerKeyRecord>, StoreError>;
}
