//! Persistence.
//!
//! [`Store`] is the one interface the rest of Tollgate uses; [`SqlStore`] implements it
//! over SQLite (the embedded default) and PostgreSQL with the same portable SQL and the
//! same versioned migrations. Records are plain data: deciding what they mean (hashing
//! secrets, sealing keys, checking scopes) is the service layer's job.

mod audit;
mod channels;
mod records;
mod revocations;
mod server_keys;
mod sql;
mod sql_audit;
mod sql_channels;
mod sql_revocations;
mod sql_server_keys;
mod sql_subscribers;
mod subscribers;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use audit::{AuditQuery, AuditRecord, AuditStore};
pub use channels::{ChannelStore, NamespaceRecord, UserAuthKeyRecord};
pub use records::{
    AddressRecord, ApiTokenRecord, EmbedKeyRecord, EncryptionKeyRecord, FamilyRecord, KeyState,
    Login, NewApiToken, NewRefreshToken, ProjectRecord, Rotation, SigningKeyRecord,
    SubscriberProfile, SubscriberRecord,
};
pub use revocations::{RevocationRecord, RevocationStore};
pub use server_keys::{ServerKeyRecord, ServerKeyStore};
pub use sql::{SqlOptions, SqlStore, SqliteSynchronous};
pub use subscribers::SubscriberStore;

use async_trait::async_trait;
use tollgate_token::ids::ApiTokenId;
use tollgate_token::{KeyId, ProjectId, UnixTime};

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The referenced row does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint was violated.
    #[error("already exists")]
    Conflict,
    /// The database could not be reached or failed; the operation did not happen.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row held a value the code cannot interpret.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Tollgate's persistent state.
///
/// The supertraits hold the rest of it: [`SubscriberStore`] (Fabric), [`ChannelStore`]
/// (channel rules, key rotation), [`ServerKeyStore`] (server API keys),
/// [`RevocationStore`] (revoked tokens) and [`AuditStore`] (the audit log).
///
/// Every method is atomic: it either happens completely or not at all.
#[async_trait]
pub trait Store:
    SubscriberStore
    + ChannelStore
    + ServerKeyStore
    + RevocationStore
    + AuditStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Returns the stored value of an instance setting, first storing `init` if there is
    /// none. Concurrent callers all get the one value that won.
    async fn setting_or_init(&self, name: &str, init: &str) -> Result<String, StoreError>;

    /// Creates a project together with its first API token and signing key.
    async fn create_project(
        &self,
        project: &ProjectRecord,
        token: &NewApiToken,
        key: &SigningKeyRecord,
    ) -> Result<(), StoreError>;

    /// All projects, oldest first.
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError>;

    /// One project.
    async fn project(&self, id: ProjectId) -> Result<Option<ProjectRecord>, StoreError>;

    /// Adds an API token to an existing project (`NotFound` if there is no such project).
    async fn insert_api_token(&self, token: &NewApiToken) -> Result<(), StoreError>;

    /// A project's API tokens, revoked ones included, oldest first.
    async fn list_api_tokens(&self, project: ProjectId) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// Marks a token revoked. `Ok(false)` if it does not exist or was already revoked.
    async fn revoke_api_token(
        &self,
        project: ProjectId,
        id: ApiTokenId,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// The unrevoked token of `project` whose hash is `token_hash`.
    async fn active_api_token(
        &self,
        project: ProjectId,
        token_hash: &str,
    ) -> Result<Option<ApiTokenRecord>, StoreError>;

    /// The signing key with this id.
    async fn signing_key(&self, kid: &KeyId) -> Result<Option<SigningKeyRecord>, StoreError>;

    /// A project's signing keys in the given state, newest first.
    async fn signing_keys(
        &self,
        project: ProjectId,
        state: KeyState,
    ) -> Result<Vec<SigningKeyRecord>, StoreError>;
}

#[cfg(test)]
mod tests;
