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
