//! The channel-rules half of the store interface: group membership, namespaces, user-JWT
//! verification keys, and signing-key rotation.

use async_trait::async_trait;
use tollgate_token::{ProjectId, UnixTime};

use crate::{SigningKeyRecord, StoreError};

/// A namespace as stored (rule and id format in their text forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub name: String,
    pub rule: String,
    pub id_format: String,
    pub token_ttl: i64,
}

/// How to verify one application's user JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuthKeyRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    pub issuer: String,
    pub audience: String,
    pub alg: String,
    /// Sealed secret (HMAC) or base64 SubjectPublicKeyInfo DER (public keys).
    pub key_data: String,
    pub created_at: UnixTime,
}

/// Persistence for channel rules. Every method is atomic.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Adds a member. `false` if it was one already.
    async fn put_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Removes a member. `false` if it was not one.
    async fn delete_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
    ) -> Result<bool, StoreError>;

    /// A group's members with when they joined, in joining order.
    async fn members(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
    ) -> Result<Vec<(String, UnixTime)>, StoreError>;

    /// Whether `user` is a member of the group.
    async fn is_member(
        &self,
        project: ProjectId,
        kind: &str,
        group: &str,
        user: &str,
    ) -> Result<bool, StoreError>;

    /// Adds or replaces a project namespace.
    async fn put_namespace(
        &self,
        project: ProjectId,
        ns: &NamespaceRecord,
        now: UnixTime,
    ) -> Result<(), StoreError>;

    /// Removes a project namespace. `false` if absent.
    async fn delete_namespace(&self, project: ProjectId, name: &str) -> Result<bool, StoreError>;

    /// A project's own namespaces.
    async fn namespaces(&self, project: ProjectId) -> Result<Vec<NamespaceRecord>, StoreError>;

    /// Adds a user-JWT key (`Conflict` if another one has the issuer).
    async fn insert_user_auth_key(&self, key: &UserAuthKeyRecord) -> Result<(), StoreError>;

    /// A project's user-JWT keys.
    async fn user_auth_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<UserAuthKeyRecord>, StoreError>;

    /// Removes the project's user-JWT key for `issuer`. `false` if absent.
    async fn delete_user_auth_key(
        &self,
        project: ProjectId,
        issuer: &str,
    ) -> Result<bool, StoreError>;

    /// The user-JWT key for an issuer.
    async fn user_auth_key(&self, issuer: &str) -> Result<Option<UserAuthKeyRecord>, StoreError>;

    /// Makes `key` the project's active signing key; previously active ones become
    /// `retiring` until `retire_until`.
    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_until: UnixTime,
    ) -> Result<(), StoreError>;

    /// Every signing key of a project, any state, newest first.
    async fn all_signing_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Signing keys that verify at `now` across all projects (active, or retiring and not
    /// yet past `not_after`): what the JWKS publishes.
    async fn live_signing_keys(&self, now: UnixTime) -> Result<Vec<SigningKeyRecord>, StoreError>;
}
