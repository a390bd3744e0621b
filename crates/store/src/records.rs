//! Row types exchanged with the store.

use std::fmt;
use std::str::FromStr;

use tollgate_token::ids::ApiTokenId;
use tollgate_token::jose::Algorithm;
use tollgate_token::{KeyId, ProjectId, Scopes, UnixTime};

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: ProjectId,
    pub name: String,
    pub created_at: UnixTime,
}

/// An API token to insert. Holds the hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub id: ApiTokenId,
    pub project_id: ProjectId,
    pub name: String,
    pub token_hash: String,
    pub scopes: Scopes,
    pub created_at: UnixTime,
}

/// A stored API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: ApiTokenId,
    pub project_id: ProjectId,
    pub name: String,
    /// The keyed hash (not the token).
    pub token_hash: String,
    pub scopes: Scopes,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Signs new tokens.
    Active,
    /// Verifies tokens it signed until `not_after`; signs nothing.
    Retiring,
    /// Neither signs nor verifies.
    Retired,
}

impl KeyState {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }
}

impl FromStr for KeyState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(KeyState::Pending),
            "active" => Ok(KeyState::Active),
            "retiring" => Ok(KeyState::Retiring),
            "retired" => Ok(KeyState::Retired),
            other => Err(format!("unknown key state {other:?}")),
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signing key as stored: its secret is sealed by the service layer before it gets here.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: KeyId,
    pub project_id: ProjectId,
    pub alg: Algorithm,
    pub state: KeyState,
    pub sealed_secret: String,
    pub public_key: Option<String>,
    pub created_at: UnixTime,
    pub not_after: Option<UnixTime>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("project_id", &self.project_id)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A subscriber-token encryption key as stored (its secret sealed by the service layer).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKeyRecord {
    pub kid: KeyId,
    pub project_id: ProjectId,
    pub state: KeyState,
    pub sealed_secret: String,
    pub created_at: UnixTime,
    pub not_after: Option<UnixTime>,
}

impl fmt::Debug for EncryptionKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeyRecord")
            .field("kid", &self.kid)
            .field("project_id", &self.project_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Subscriber profile fields. In an update, `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberProfile {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub job_title: Option<String>,
    pub timezone: Option<String>,
    pub country: Option<String>,
    pub company_name: Option<String>,
}

/// A subscriber.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriberRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    /// The token API's `reference`, the CRUD API's `email`.
    pub reference: String,
    pub profile: SubscriberProfile,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl fmt::Debug for SubscriberRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberRecord")
            .field("id", &self.id)
            .field("project_id", &self.project_id)
            .field("reference", &self.reference)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// A subscriber's address (what guest and invite tokens point at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    pub subscriber_id: uuid::Uuid,
    pub name: String,
    pub display_name: String,
    pub created_at: UnixTime,
}

/// A refresh-token family: every token descended from one token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    pub subscriber_id: Option<uuid::Uuid>,
    pub kind: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// A refresh token to record (by id only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub jti: uuid::Uuid,
    pub family_id: uuid::Uuid,
    pub parent_jti: Option<uuid::Uuid>,
    pub expires_at: UnixTime,
    pub created_at: UnixTime,
}

/// What happened to a refresh token presented for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// It was unused: it is now used, and its successor is recorded.
    Rotated,
    /// It was spent moments ago (within the reuse leeway): refused, family untouched.
    Contended,
    /// It had been used before (or its family was revoked): the family is now revoked.
    Reused,
    /// No such token is recorded.
    Unknown,
}

/// A new token family for a subscriber, recorded together with the subscriber upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub family_id: uuid::Uuid,
    pub kind: String,
    pub first_refresh: NewRefreshToken,
}

/// A click-to-call embed key (its token kept only as a keyed hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedKeyRecord {
    pub id: uuid::Uuid,
    pub project_id: ProjectId,
    pub address_id: uuid::Uuid,
    pub token_hash: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}
