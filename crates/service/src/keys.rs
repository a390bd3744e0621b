//! Signing keys: generation, sealing for storage, and an in-memory cache so that minting a
//! token costs no database round trip and no key parsing after the first use.
//!
//! Key material never changes once written, but a key's state does (rotation): entries are
//! dropped locally on rotation, on other nodes when the rotation's `Invalidation::Keys`
//! reaches them, and expire after [`CACHE_TTL`] everywhere else, so a rotation made by
//! another process (the CLI, a node whose message was lost) takes effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tollgate_store::{EncryptionKeyRecord, KeyState, SigningKeyRecord, Store};
use tollgate_token::jose::jwe::EncryptionKey;
use tollgate_token::jose::{Algorithm, SigningKey, VerifyingKey};
use tollgate_token::{KeyId, ProjectId, UnixTime};

use crate::ServiceError;
use crate::secrets::Secrets;

/// The algorithm of the key every new project gets. ES256: asymmetric (so it can be
/// published in a JWKS and verified by an external Centrifugo), supported by every
/// Centrifugo verification path, and fast to sign with aws-lc.
pub(crate) const DEFAULT_ALGORITHM: Algorithm = Algorithm::ES256;

/// Generates a project's first signing key, sealed for storage.
pub(crate) fn generate_record(
    secrets: &Secrets,
    project: ProjectId,
    now: UnixTime,
) -> Result<SigningKeyRecord, ServiceError> {
    generate_record_with(secrets, project, now, DEFAULT_ALGORITHM)
}

/// Generates an active signing key of `alg`, sealed for storage.
pub(crate) fn generate_record_with(
    secrets: &Secrets,
    project: ProjectId,
    now: UnixTime,
    alg: Algorithm,
) -> Result<SigningKeyRecord, ServiceError> {
    let kid = KeyId::new_random();
    let (key, secret) = SigningKey::generate(alg, kid.clone())
        .map_err(|e| ServiceError::Internal(format!("key generation failed: {e}")))?;
    let sealed_secret = secrets
        .seal(&kid, &secret)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let public_key = key
        .verifying_key()
        .public_key_bytes()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    Ok(SigningKeyRecord {
        kid,
        project_id: project,
        alg,
        state: KeyState::Active,
        sealed_secret,
        public_key,
        created_at: now,
        not_after: None,
    })
}

/// Whether a key in `state` still accepts tokens at `now`: active, or retiring and not yet
/// past `not_after`.
fn verifies(state: KeyState, not_after: Option<UnixTime>, now: UnixTime) -> bool {
    match state {
        KeyState::Active => true,
        KeyState::Retiring => not_after.is_none_or(|t| now < t),
        KeyState::Pending | KeyState::Retired => false,
    }
}

fn open(secrets: &Secrets, record: &SigningKeyRecord) -> Result<SigningKey, ServiceError> {
    let secret = secrets
        .open(&record.kid, &record.sealed_secret)
        .map_err(|_| {
            ServiceError::Internal(format!("signing key {} cannot be unsealed", record.kid))
        })?;
    SigningKey::from_secret(record.alg, record.kid.clone(), &secret)
        .map_err(|e| ServiceError::Internal(format!("signing key {}: {e}", record.kid)))
}

/// How long a cached key is trusted before its state is read again.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(30);

/// A map whose entries expire after [`CACHE_TTL`].
#[derive(Debug)]
struct TtlMap<K, V>(RwLock<HashMap<K, (V, Instant)>>);

impl<K, V> Default for TtlMap<K, V> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlMap<K, V> {
    fn get(&self, k: &K) -> Option<V> {
        read(&self.0)
            .get(k)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(v, _)| v.clone())
    }

    fn insert(&self, k: K, v: V) {
        write(&self.0).insert(k, (v, Instant::now()));
    }

    fn remove(&self, k: &K) {
        write(&self.0).remove(k);
    }

    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        write(&self.0).retain(|k, (v, _)| keep(k, v));
    }
}

/// Parsed keys, by project (the active signer and encrypter) and by key id (verifiers and
/// decrypters).
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    active: TtlMap<ProjectId, Arc<SigningKey>>,
    verifying: TtlMap<KeyId, (Arc<VerifyingKey>, ProjectId, Option<UnixTime>)>,
    encrypting: TtlMap<ProjectId, Arc<EncryptionKey>>,
    decrypting: TtlMap<KeyId, (Arc<EncryptionKey>, ProjectId)>,
}

impl KeyCache {
    /// The key that signs new tokens for `project`.
    pub(crate) async fn active(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        project: ProjectId,
    ) -> Result<Arc<SigningKey>, ServiceError> {
        if let Some(k) = self.active.get(&project) {
            return Ok(k);
        }
        let records = store.signing_keys(project, KeyState::Active).await?;
        let record = records.first().ok_or_else(|| {
            ServiceError::Internal(format!("project {project} has no active signing key"))
        })?;
        let key = Arc::new(open(secrets, record)?);
        self.active.insert(project, key.clone());
        Ok(key)
    }

    /// The key that verifies tokens with `kid`, and its project, if that key is active, or
    /// retiring and not yet past its end.
    pub(crate) async fn verifying(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        kid: &KeyId,
        now: UnixTime,
    ) -> Result<Option<(Arc<VerifyingKey>, ProjectId)>, ServiceError> {
        // A retiring key stops verifying at its end even while it is cached.
        if let Some((k, project, not_after)) = self.verifying.get(kid) {
            return Ok(not_after.is_none_or(|t| now < t).then_some((k, project)));
        }
        let Some(record) = store.signing_key(kid).await? else {
            return Ok(None);
        };
        if !verifies(record.state, record.not_after, now) {
            return Ok(None);
        }
        let key = Arc::new(open(secrets, &record)?.verifying_key());
        let until = (record.state == KeyState::Retiring)
            .then_some(record.not_after)
            .flatten();
        self.verifying
            .insert(kid.clone(), (key.clone(), record.project_id, until));
        Ok(Some((key, record.project_id)))
    }
}

impl KeyCache {
    /// The key that encrypts new subscriber tokens for `project`, created on first use.
    pub(crate) async fn active_encryption(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        project: ProjectId,
        now: UnixTime,
    ) -> Result<Arc<EncryptionKey>, ServiceError> {
        if let Some(k) = self.encrypting.get(&project) {
            return Ok(k);
        }
        let mut records = store.encryption_keys(project, KeyState::Active).await?;
        if records.is_empty() {
            // Concurrent first uses may each add a key; all stay valid for decryption (by
            // kid), and everyone then signs with the newest.
            let record = new_encryption_record(secrets, project, now)?;
            store.insert_encryption_key(&record).await?;
            records = store.encryption_keys(project, KeyState::Active).await?;
        }
        let record = records.first().ok_or_else(|| {
            ServiceError::Internal(format!("project {project} has no encryption key"))
        })?;
        let key = Arc::new(open_encryption(secrets, record)?);
        self.encrypting.insert(project, key.clone());
        Ok(key)
    }

    /// The key that decrypts tokens with `kid`, and its project, if that key is live.
    pub(crate) async fn decryption(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        kid: &KeyId,
        now: UnixTime,
    ) -> Result<Option<(Arc<EncryptionKey>, ProjectId)>, ServiceError> {
        if let Some(k) = self.decrypting.get(kid) {
            return Ok(Some(k));
        }
        let Some(record) = store.encryption_key(kid).await? else {
            return Ok(None);
        };
        if !verifies(record.state, record.not_after, now) {
            return Ok(None);
        }
        let entry = (
            Arc::new(open_encryption(secrets, &record)?),
            record.project_id,
        );
        self.decrypting.insert(kid.clone(), entry.clone());
        Ok(Some(entry))
    }

    /// Forgets the project's cached signer, after a rotation made here.
    pub(crate) fn forget_project(&self, project: ProjectId) {
        self.active.remove(&project);
    }

    /// Forgets every cached key of `project` (another node rotated one): the next use
    /// reads their states again.
    pub(crate) fn forget_everything_of(&self, project: ProjectId) {
        self.active.remove(&project);
        self.verifying.retain(|_, (_, p, _)| *p != project);
        self.encrypting.remove(&project);
        self.decrypting.retain(|_, (_, p)| *p != project);
    }

    /// Forgets every cached key of every project.
    pub(crate) fn forget_all(&self) {
        self.active.retain(|_, _| false);
        self.verifying.retain(|_, _| false);
        self.encrypting.retain(|_, _| false);
        self.decrypting.retain(|_, _| false);
    }

    /// Makes a fresh key the project's encrypter; the old one keeps decrypting until
    /// `retire_until`. Returns the new key id.
    pub(crate) async fn rotate_encryption(
        &self,
        store: &dyn Store,
        secrets: &Secrets,
        project: ProjectId,
        now: UnixTime,
        retire_until: UnixTime,
    ) -> Result<KeyId, ServiceError> {
        let record = new_encryption_record(secrets, project, now)?;
        let kid = record.kid.clone();
        store.rotate_encryption_key(&record, retire_until).await?;
        self.encrypting.retain(|p, _| *p != project);
        self.decrypting.retain(|_, (_, p)| *p != project);
        Ok(kid)
    }
}

/// A fresh active encryption key for `project`, sealed for storage.
fn new_encryption_record(
    secrets: &Secrets,
    project: ProjectId,
    now: UnixTime,
) -> Result<EncryptionKeyRecord, ServiceError> {
    let kid = KeyId::new_random();
    let (_, secret) =
        EncryptionKey::generate(kid.clone()).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(EncryptionKeyRecord {
        sealed_secret: secrets
            .seal(&kid, &secret)
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        kid,
        project_id: project,
        state: KeyState::Active,
        created_at: now,
        not_after: None,
    })
}

fn open_encryption(
    secrets: &Secrets,
    record: &EncryptionKeyRecord,
) -> Result<EncryptionKey, ServiceError> {
    let secret = secrets
        .open(&record.kid, &record.sealed_secret)
        .map_err(|_| {
            ServiceError::Internal(format!("encryption key {} cannot be unsealed", record.kid))
        })?;
    EncryptionKey::from_bytes(record.kid.clone(), &secret)
        .map_err(|e| ServiceError::Internal(format!("encryption key {}: {e}", record.kid)))
}

// A poisoned lock only means another thread panicked mid-insert of an immutable value;
// the map is still consistent, so keep serving.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
