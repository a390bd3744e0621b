//! The subscriber half of the store interface: subscribers and their addresses,
//! subscriber-token encryption keys, refresh-token families and DPoP proof ids.

use async_trait::async_trait;
use tollgate_token::{KeyId, ProjectId, UnixTime};
use uuid::Uuid;

use crate::{
    AddressRecord, EmbedKeyRecord, EncryptionKeyRecord, FamilyRecord, KeyState, Login,
    NewRefreshToken, Rotation, StoreError, SubscriberProfile, SubscriberRecord,
};

/// Persistence for subscribers and their tokens. Every method is atomic.
#[async_trait]
pub trait SubscriberStore: Send + Sync {
    /// Adds an encryption key.
    async fn insert_encryption_key(&self, key: &EncryptionKeyRecord) -> Result<(), StoreError>;

    /// The encryption key with this id.
    async fn encryption_key(&self, kid: &KeyId) -> Result<Option<EncryptionKeyRecord>, StoreError>;

    /// Makes `key` the project's active encryption key; the previously active ones become
    /// `retiring` until `retire_until` (they still decrypt, but encrypt nothing).
    async fn rotate_encryption_key(
        &self,
        key: &EncryptionKeyRecord,
        retire_until: UnixTime,
    ) -> Result<(), StoreError>;

    /// A project's encryption keys in `state`, newest first.
    async fn encryption_keys(
        &self,
        project: ProjectId,
        state: KeyState,
    ) -> Result<Vec<EncryptionKeyRecord>, StoreError>;

    /// Creates a subscriber with its first address. `Conflict` if the reference (email) is
    /// taken in the project.
    async fn insert_subscriber(
        &self,
        subscriber: &SubscriberRecord,
        address: &AddressRecord,
    ) -> Result<(), StoreError>;

    /// The subscriber with this reference, created (with `address`) if there is none, else
    /// updated with the given profile fields and password hash; in the same transaction,
    /// `login` (if given) records a new token family for it with its first refresh token.
    /// Returns the subscriber as stored.
    async fn upsert_subscriber(
        &self,
        subscriber: &SubscriberRecord,
        address: &AddressRecord,
        login: Option<&Login>,
    ) -> Result<SubscriberRecord, StoreError>;

    /// One subscriber of a project.
    async fn subscriber(
        &self,
        project: ProjectId,
        id: Uuid,
    ) -> Result<Option<SubscriberRecord>, StoreError>;

    /// A page of a project's subscribers in creation order, after the subscriber `after`.
    async fn list_subscribers(
        &self,
        project: ProjectId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<SubscriberRecord>, StoreError>;

    /// Updates the given fields (and, when `Some`, the reference and password hash).
    /// `Ok(None)` if there is no such subscriber; `Conflict` if the new reference is taken.
    async fn update_subscriber(
        &self,
        project: ProjectId,
        id: Uuid,
        reference: Option<&str>,
        profile: &SubscriberProfile,
        password_hash: Option<&str>,
        now: UnixTime,
    ) -> Result<Option<SubscriberRecord>, StoreError>;

    /// Deletes a subscriber with its addresses and token families. `false` if absent.
    async fn delete_subscriber(&self, project: ProjectId, id: Uuid) -> Result<bool, StoreError>;

    /// A subscriber's addresses, oldest first.
    async fn subscriber_addresses(
        &self,
        project: ProjectId,
        subscriber: Uuid,
    ) -> Result<Vec<AddressRecord>, StoreError>;

    /// One address of a project.
    async fn address(
        &self,
        project: ProjectId,
        id: Uuid,
    ) -> Result<Option<AddressRecord>, StoreError>;

    /// Records a new family and, if given, its first refresh token.
    async fn insert_family(
        &self,
        family: &FamilyRecord,
        first: Option<&NewRefreshToken>,
    ) -> Result<(), StoreError>;

    /// One family.
    async fn family(&self, id: Uuid) -> Result<Option<FamilyRecord>, StoreError>;

    /// Spends refresh token `jti` of `family` and records `next`, atomically: exactly one
    /// of any number of concurrent callers gets `Rotated`. A token spent less than
    /// `reuse_leeway_ms` milliseconds ago is `Contended` (refused, family intact); one
    /// spent earlier, or one of a revoked family, revokes the whole family (`Reused`).
    ///
    /// `now_ms` is milliseconds since the epoch: when a token was spent is recorded to the
    /// millisecond, so a leeway of a second or two is measured exactly rather than in
    /// wall-clock seconds.
    async fn rotate_refresh_token(
        &self,
        family: Uuid,
        jti: Uuid,
        next: &NewRefreshToken,
        now_ms: i64,
        reuse_leeway_ms: i64,
    ) -> Result<Rotation, StoreError>;

    /// Records a DPoP proof id until `expires_at`. `false` if it was already recorded
    /// (a replay). Also forgets ids that expired before `now`.
    async fn record_dpop_proof(
        &self,
        id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Adds an embed key (`NotFound` if the address is not in the project).
    async fn insert_embed_key(&self, key: &EmbedKeyRecord) -> Result<(), StoreError>;

    /// The unrevoked embed key with this token hash.
    async fn active_embed_key(
        &self,
        token_hash: &str,
    ) -> Result<Option<EmbedKeyRecord>, StoreError>;

    /// A project's embed keys, revoked ones included.
    async fn list_embed_keys(&self, project: ProjectId) -> Result<Vec<EmbedKeyRecord>, StoreError>;

    /// Revokes an embed key. `false` if absent or already revoked.
    async fn revoke_embed_key(
        &self,
        project: ProjectId,
        id: Uuid,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
}
