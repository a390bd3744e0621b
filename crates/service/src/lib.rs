//! Application services: the operations Tollgate offers, independent of how they are
//! reached (HTTP handler, CLI command, later the gateway).
//!
//! [`Tollgate`] owns the store, the derived secrets and the signing-key cache. Each public
//! method is one use case; front ends call exactly one of them per request and map
//! [`ServiceError`] to their own error shape.

mod cache;
pub mod centrifugo;
pub mod clock;
pub mod fabric;
pub mod gateway;
pub mod invalidation;
mod jwks;
mod keys;
mod password;
pub mod revocation;
pub mod secrets;
pub mod server_keys;
mod shared;

use std::sync::Arc;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;
use tollgate_store::{ApiTokenRecord, NewApiToken, ProjectRecord, Store, StoreError};
use tollgate_token::ids::ApiTokenId;
use tollgate_token::jose::{self, HeaderExtras};
use tollgate_token::pubsub::{self, FieldError, Product};
use tollgate_token::{ProjectId, Scope, Scopes};

pub use clock::{Clock, ManualClock, SystemClock};
pub use invalidation::{Invalidation, InvalidationError, Invalidations};
use keys::KeyCache;
pub use revocation::RevocationStats;
pub use secrets::{ApiTokenSecret, MasterKey, Secrets};
pub use server_keys::{ServerKey, ServerKeySecret};
pub use shared::{PROJECT_SETTING, ServerApiCaller, SharedCredentials};

/// Service-level settings, validated by the caller's configuration layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of every token Tollgate signs.
    pub issuer: String,
    /// The public WebSocket address clients should connect to, written into the `ch`
    /// header of PubSub/Chat tokens so `@signalwire/js` needs no `host` option.
    pub public_gateway_url: Option<String>,
    /// Longest lifetime (seconds) a subscriber, guest or invite token may be given.
    pub max_subscriber_token_lifetime: i64,
    /// Seconds after a refresh token is spent during which presenting it again counts as
    /// the same client's concurrent or retried request (refused, family kept) rather than
    /// a replay (family revoked). 0 makes every second use a replay.
    pub refresh_reuse_leeway: i64,
    /// Longest a token family (one login and all its refreshes) may live, in seconds.
    pub max_family_lifetime: i64,
    /// Whether JWKS URLs may name loopback, private, link-local and other non-public
    /// addresses (and loopback plain http). Off: they are refused when configured and when
    /// a host name resolves to one at fetch time (SSRF).
    pub jwks_allow_private_hosts: bool,
    /// The deployment-wide Centrifugo credentials and the project they act for: that
    /// project's Centrifugo tokens are HS256 with the shared secret, so an external
    /// Centrifugo accepts them.
    pub centrifugo: SharedCredentials,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "tollgate".to_owned(),
            public_gateway_url: None,
            max_subscriber_token_lifetime: 24 * 60 * 60,
            refresh_reuse_leeway: 2,
            max_family_lifetime: 30 * 24 * 60 * 60,
            jwks_allow_private_hosts: false,
            centrifugo: SharedCredentials::default(),
        }
    }
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Credentials are missing, wrong, revoked, or lack the needed scope.
    #[error("unauthorized")]
    Unauthorized,
    /// The credential is understood but grants nothing here (SignalWire uses this only for a
    /// bad click-to-call embed token).
    #[error("forbidden")]
    Forbidden,
    /// The request named fields that failed validation (all of them are listed).
    // Messages listed so the CLI, which prints this, says what to fix.
    #[error("validation failed: {}", field_messages(.0))]
    Validation(Vec<FieldError>),
    /// An argument was invalid (administrative operations).
    #[error("{0}")]
    InvalidInput(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A dependency (the database) is unreachable; nothing was changed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupted state. The detail is for logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

fn field_messages(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound("record"),
            StoreError::Unavailable(detail) => ServiceError::Unavailable(detail),
            StoreError::Conflict => ServiceError::Internal("unexpected conflict".into()),
            StoreError::Corrupt(detail) => ServiceError::Internal(detail),
        }
    }
}

/// Who made an API call: the project and the API token it authenticated with.
#[derive(Debug, Clone)]
pub struct Principal {
    pub project_id: ProjectId,
    pub token_id: ApiTokenId,
    pub scopes: Scopes,
}

impl Principal {
    /// Fails with `Unauthorized` unless the token has one of `scopes` (SignalWire answers
    /// a missing scope with 401, not 403).
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ServiceError> {
        if self.scopes.contains_any(scopes) {
            Ok(())
        } else {
            Err(ServiceError::Unauthorized)
        }
    }
}

/// A new project and the one-time view of its first API token.
#[derive(Debug)]
pub struct CreatedProject {
    pub project: ProjectRecord,
    pub token_id: ApiTokenId,
    pub api_token: ApiTokenSecret,
}

/// Longest project or API-token name accepted.
pub const MAX_NAME_CHARS: usize = 200;

/// The Tollgate application.
#[derive(Debug, Clone)]
pub struct Tollgate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    secrets: Secrets,
    settings: Settings,
    clock: Arc<dyn Clock>,
    keys: KeyCache,
    jwks: jwks::JwksCache,
    /// SAT families recently found valid, by (project, family, subscriber): a hit vouches
    /// only for the project whose key decrypted the token.
    sat_cache: cache::TtlCache<(ProjectId, uuid::Uuid, Option<uuid::Uuid>), ()>,
    /// Each project's namespaces.
    ns_cache:
        cache::TtlCache<ProjectId, std::sync::Arc<Vec<tollgate_token::centrifugo::Namespace>>>,
    /// The only project, while there is exactly one (what the deployment-wide credentials
    /// act for without `centrifugo.project`).
    only_project: cache::TtlCache<(), Option<ProjectId>>,
    /// Where this node announces what other nodes' caches should forget (unset: a single
    /// process, or the CLI).
    invalidations: std::sync::OnceLock<Arc<dyn Invalidations>>,
    /// Every project's live revocations (see `revocation`).
    revocations: revocation::RevocationCache,
}

impl Tollgate {
    /// Builds the service, checking that `master` is the key this database was set up with
    /// (recording it on first start).
    pub async fn new(
        store: Arc<dyn Store>,
        master: &MasterKey,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServiceError> {
        let secrets = Secrets::new(master);
        let stored = store
            .setting_or_init(secrets::CHECK_SETTING, secrets.check_value())
            .await?;
        if !secrets.matches_check_value(&stored) {
            return Err(ServiceError::InvalidInput(
                "the master key (TOLLGATE_SECRET_KEY or the key file) is not the one this \
                 database was created with"
                    .into(),
            ));
        }
        let jwks = jwks::JwksCache::new(settings.jwks_allow_private_hosts);
        let tollgate = Self {
            inner: Arc::new(Inner {
                store,
                secrets,
                settings,
                clock,
                keys: KeyCache::default(),
                jwks,
                sat_cache: cache::TtlCache::default(),
                ns_cache: cache::TtlCache::default(),
                only_project: cache::TtlCache::default(),
                invalidations: std::sync::OnceLock::new(),
                revocations: revocation::RevocationCache::default(),
            }),
        };
        // Every revocation is held before the first token is checked: a restart loses none.
        tollgate.reload_all_revocations().await?;
        Ok(tollgate)
    }

    /// Announces this node's cache invalidations to the others from now on (once per
    /// process; later calls are ignored).
    pub fn set_invalidations(&self, invalidations: Arc<dyn Invalidations>) {
        let _ = self.inner.invalidations.set(invalidations);
    }

    /// Tells other nodes to forget what this node just changed (it has already forgotten
    /// its own entries).
    fn announce(&self, invalidation: Invalidation) {
        if let Some(to) = self.inner.invalidations.get() {
            to.publish(invalidation);
        }
    }

    /// Forgets the cached entries another node's change made stale. Only ever forgets:
    /// the next use reloads from the database.
    pub fn forget(&self, invalidation: Invalidation) {
        match invalidation {
            Invalidation::Namespaces(project) => self.inner.ns_cache.forget(|p| *p == project),
            Invalidation::Keys(project) => self.inner.keys.forget_everything_of(project),
            Invalidation::Sats(project) => {
                self.inner.sat_cache.forget(|(p, _, _)| *p == project);
            }
            Invalidation::ProjectCreated(_) => self.inner.only_project.clear(),
            Invalidation::Revocations(project) => self.revocations_stale(project),
        }
    }

    /// Forgets every cached answer of every project: what to do when invalidations from
    /// other nodes may have been missed (the control channel reconnected, or its receiver
    /// fell behind). Costs one reload per entry, nothing else.
    pub fn forget_everything(&self) {
        self.inner.ns_cache.clear();
        self.inner.sat_cache.clear();
        self.inner.only_project.clear();
        self.inner.keys.forget_all();
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        Ok(self.inner.store.ping().await?)
    }

    /// Checks HTTP Basic credentials `project:token`.
    ///
    /// Unknown project, wrong token and revoked token are indistinguishable to the caller,
    /// and take the same path: one indexed lookup of the keyed hash scoped to the project,
    /// then a constant-time comparison of the hashes. (The index lookup compares keyed
    /// hashes, whose bytes an attacker cannot steer without the key; the explicit
    /// constant-time check keeps the guarantee independent of the database.)
    pub async fn authenticate(
        &self,
        project: &str,
        token: &str,
    ) -> Result<Principal, ServiceError> {
        let project_id: ProjectId = project.parse().map_err(|_| ServiceError::Unauthorized)?;
        if token.is_empty() || token.len() > 256 {
            return Err(ServiceError::Unauthorized);
        }
        let hash = self.inner.secrets.hash_api_token(token);
        let record = self
            .inner
            .store
            .active_api_token(project_id, &hash)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        if !bool::from(record.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(ServiceError::Unauthorized);
        }
        Ok(Principal {
            project_id: record.project_id,
            token_id: record.id,
            scopes: record.scopes,
        })
    }

    /// Creates a project with its first API token and its first signing key, atomically.
    pub async fn create_project(
        &self,
        name: &str,
        scopes: Scopes,
    ) -> Result<CreatedProject, ServiceError> {
        let name = valid_name(name)?;
        let now = self.inner.clock.now();
        let project = ProjectRecord {
            id: ProjectId::new_random(),
            name,
            created_at: now,
        };
        let (new_token, secret) = self.new_api_token(project.id, "default", scopes)?;
        let key = keys::generate_record(&self.inner.secrets, project.id, now)?;
        self.inner
            .store
            .create_project(&project, &new_token, &key)
            .await?;
        // A second project unbinds the deployment-wide credentials (without
        // `centrifugo.project`): this node stops using them at once.
        self.inner.only_project.clear();
        self.announce(Invalidation::ProjectCreated(project.id));
        Ok(CreatedProject {
            project,
            token_id: new_token.id,
            api_token: secret,
        })
    }

    /// All projects.
    pub async fn list_projects(&self) -> Result<Vec<ProjectRecord>, ServiceError> {
        Ok(self.inner.store.list_projects().await?)
    }

    /// Adds an API token to a project. The secret is returned once and never stored.
    pub async fn create_api_token(
        &self,
        project: ProjectId,
        name: &str,
        scopes: Scopes,
    ) -> Result<(ApiTokenId, ApiTokenSecret), ServiceError> {
        let name = valid_name(name)?;
        let (new_token, secret) = self.new_api_token(project, &name, scopes)?;
        match self.inner.store.insert_api_token(&new_token).await {
            Ok(()) => Ok((new_token.id, secret)),
            Err(StoreError::NotFound) => Err(ServiceError::NotFound("project")),
            Err(e) => Err(e.into()),
        }
    }

    /// A project's API tokens (metadata only; secrets are never kept).
    pub async fn list_api_tokens(
        &self,
        project: ProjectId,
    ) -> Result<Vec<ApiTokenRecord>, ServiceError> {
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        Ok(self.inner.store.list_api_tokens(project).await?)
    }

    /// Revokes an API token; it stops working on the next request.
    pub async fn revoke_api_token(
        &self,
        project: ProjectId,
        id: ApiTokenId,
    ) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        if self.inner.store.revoke_api_token(project, id, now).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("active API token"))
        }
    }

    /// Mints a SignalWire-compatible PubSub or Chat token from a request body.
    pub async fn issue_realtime_token(
        &self,
        principal: &Principal,
        product: Product,
        body: &Map<String, Value>,
    ) -> Result<String, ServiceError> {
        principal.require_any(&[product.required_scope()])?;
        let request = pubsub::parse_request(product, body).map_err(ServiceError::Validation)?;
        let key = self
            .inner
            .keys
            .active(
                &*self.inner.store,
                &self.inner.secrets,
                principal.project_id,
            )
            .await?;
        let now = self.inner.clock.now();
        let claims = request.claims(&self.inner.settings.issuer, principal.project_id, now);
        let extras = HeaderExtras {
            typ: Some(product.jose_typ()),
            ch: self.inner.settings.public_gateway_url.as_deref(),
        };
        jose::sign(&key, extras, &claims).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// The key that verifies tokens carrying `kid`, if it is live. For the gateway and tests.
    pub async fn verifying_key(
        &self,
        kid: &tollgate_token::KeyId,
    ) -> Result<Option<Arc<jose::VerifyingKey>>, ServiceError> {
        Ok(self.project_key(kid).await?.map(|(key, _)| key))
    }

    /// The live key with this id and the project it belongs to.
    pub async fn project_key(
        &self,
        kid: &tollgate_token::KeyId,
    ) -> Result<Option<(Arc<jose::VerifyingKey>, ProjectId)>, ServiceError> {
        self.inner
            .keys
            .verifying(
                &*self.inner.store,
                &self.inner.secrets,
                kid,
                self.inner.clock.now(),
            )
            .await
    }

    fn new_api_token(
        &self,
        project: ProjectId,
        name: &str,
        scopes: Scopes,
    ) -> Result<(NewApiToken, ApiTokenSecret), ServiceError> {
        if scopes.is_empty() {
            return Err(ServiceError::InvalidInput(
                "an API token needs at least one scope".into(),
            ));
        }
        let secret = ApiTokenSecret::generate();
        let record = NewApiToken {
            id: ApiTokenId::new_random(),
            project_id: project,
            name: name.to_owned(),
            token_hash: self.inner.secrets.hash_api_token(secret.expose()),
            scopes,
            created_at: self.inner.clock.now(),
        };
        Ok((record, secret))
    }
}

fn valid_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ServiceError::InvalidInput(format!(
            "a name must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod refresh_leeway_tests;
#[cfg(test)]
mod tests;
