//! Per-project server API keys: the credentials a backend sends (as `X-API-Key` or
//! `Authorization: apikey …`) to Centrifugo's server API.
//!
//! A key names its project by itself — no project id travels with it — so keys are found by
//! their keyed hash across all projects, and the hash column is unique. Only the hash is
//! stored (under its own key derived from the master key, see `secrets`); the key is shown
//! once, when it is created.

use std::fmt;

use subtle::ConstantTimeEq as _;
use tollgate_store::{ServerKeyRecord, StoreError};
use tollgate_token::{ProjectId, UnixTime};
use uuid::Uuid;

use crate::{ServiceError, Tollgate, valid_name};

/// What every server API key starts with, so a leaked one is recognisable (secret scanners,
/// logs) and garbage is refused without a database lookup.
pub const SERVER_KEY_PREFIX: &str = "sk_";

/// Longest string [`Tollgate::authenticate_server_key`] will hash; real keys are 67 bytes.
pub const MAX_SERVER_KEY_LEN: usize = 128;

/// Name given to a key created without one.
pub const DEFAULT_SERVER_KEY_NAME: &str = "server key";

/// A freshly generated server API key. Shown to its owner once; only its hash is stored.
///
/// Like `ApiTokenSecret`: no `PartialEq` (comparisons go through the keyed hash) and a
/// redacting `Debug`.
pub struct ServerKeySecret(String);

impl ServerKeySecret {
    /// `sk_` followed by 64 hex digits: 256 random bits.
    fn generate() -> Self {
        let bytes: [u8; 32] = tollgate_token::jose::random_bytes();
        Self(format!("{SERVER_KEY_PREFIX}{}", hex::encode(bytes)))
    }

    /// The key text, for showing once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServerKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKeySecret([REDACTED])")
    }
}

/// A server API key as callers see it: metadata only. The hash stays in the store layer so
/// no front end can print it by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub name: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

impl From<ServerKeyRecord> for ServerKey {
    fn from(r: ServerKeyRecord) -> Self {
        Self {
            id: r.id,
            project_id: r.project_id,
            name: r.name,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

impl Tollgate {
    /// Creates a server API key for `project`. The key is returned once and never stored.
    pub async fn create_server_key(
        &self,
        project: ProjectId,
        name: Option<String>,
    ) -> Result<(ServerKey, ServerKeySecret), ServiceError> {
        let name = valid_name(name.as_deref().unwrap_or(DEFAULT_SERVER_KEY_NAME))?;
        let secret = ServerKeySecret::generate();
        let record = ServerKeyRecord {
            id: Uuid::new_v4(),
            project_id: project,
            name,
            key_hash: self.inner.secrets.hash_server_key(secret.expose()),
            created_at: self.inner.clock.now(),
            revoked_at: None,
        };
        match self.inner.store.insert_server_key(&record).await {
            Ok(()) => Ok((record.into(), secret)),
            Err(StoreError::NotFound) => Err(ServiceError::NotFound("project")),
            Err(e) => Err(e.into()),
        }
    }

    /// A project's server API keys, revoked ones included, oldest first (never the keys).
    pub async fn list_server_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<ServerKey>, ServiceError> {
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        let keys = self.inner.store.list_server_keys(project).await?;
        Ok(keys.into_iter().map(ServerKey::from).collect())
    }

    /// Revokes one of `project`'s server API keys; it stops working on the next request.
    /// `Ok(false)` if the project has no such active key (another project's key included).
    pub async fn revoke_server_key(
        &self,
        project: ProjectId,
        key_id: Uuid,
    ) -> Result<bool, ServiceError> {
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .store
            .revoke_server_key(project, key_id, now)
            .await?)
    }

    /// The project an active server API key acts for; `Ok(None)` for anything else
    /// (unknown, revoked, malformed or oversized), so callers answer all of them alike.
    ///
    /// One keyed hash and one indexed lookup. The lookup compares keyed hashes, whose bytes
    /// an attacker cannot steer without the key; the constant-time check after it keeps
    /// that guarantee independent of the database, as `authenticate` does.
    pub async fn authenticate_server_key(
        &self,
        key: &str,
    ) -> Result<Option<ProjectId>, ServiceError> {
        if key.len() > MAX_SERVER_KEY_LEN || !key.starts_with(SERVER_KEY_PREFIX) {
            return Ok(None);
        }
        let hash = self.inner.secrets.hash_server_key(key);
        let Some(record) = self.inner.store.active_server_key(&hash).await? else {
            return Ok(None);
        };
        if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        Ok(Some(record.project_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_prefixed_and_redacted() {
        let a = ServerKeySecret::generate();
        let b = ServerKeySecret::generate();
        assert_eq!(a.expose().len(), 67);
        assert!(a.expose().starts_with(SERVER_KEY_PREFIX));
        assert!(a.expose().len() <= MAX_SERVER_KEY_LEN);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "ServerKeySecret([REDACTED])");
    }
}
