//! Centrifugo-compatible token authority: who the user is (a subscriber SAT or the
//! application's own user JWT), which channels they may use (namespace rules and group
//! membership), and the connection and subscription JWTs Centrifugo (or Tollgate's gateway)
//! accepts. Also the project key ring: rotation and the JWKS.

use base64::Engine as _;
use serde_json::{Value, json};
use tollgate_store::{NamespaceRecord, SigningKeyRecord, StoreError, UserAuthKeyRecord};
use tollgate_token::centrifugo::{
    self, Access, Channel, ConnectionClaims, Namespace, SubscriptionClaims, UserJwtPolicy,
};
use tollgate_token::ids::stored_id;
use tollgate_token::jose::{self, Algorithm, HeaderExtras, SigningKey, VerifyingKey};
use tollgate_token::validation::FieldError;
use tollgate_token::{GroupId, GroupKind, KeyId, ProjectId, UnixTime, UserId};
use uuid::Uuid;

use crate::fabric::TokenKind;
use crate::{Principal, ServiceError, Tollgate};

/// Longest bearer token accepted on the app-facing endpoints.
const MAX_BEARER_LEN: usize = 16 * 1024;
/// Shortest time an outgoing signing key keeps verifying: twice the key-cache lifetime, so
/// every node (and CLI-made rotations) has switched signers before it stops.
pub const MIN_RETIRE_AFTER: i64 = 2 * crate::keys::CACHE_TTL.as_secs() as i64;
/// Longest an outgoing signing key may keep verifying: 30 days.
pub const MAX_RETIRE_AFTER: i64 = 30 * 86_400;
/// How long an outgoing signing key keeps verifying unless told otherwise: a day.
pub const DEFAULT_RETIRE_AFTER: i64 = 86_400;
/// Most channels in one batch request.
pub const MAX_BATCH_CHANNELS: usize = 100;
/// Longest Centrifugo client id a subscription token may be bound to. Centrifugo's ids are
/// UUIDs (36 characters); the id is copied into every token of a batch, so an unbounded one
/// turned a 1 MB request into a 100 MB response.
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// The stored `alg` of user-JWT keys found through a JWKS URL (the URL is the key data).
const JWKS_ALG: &str = "JWKS";
/// Key id of tokens signed with the shared Centrifugo HMAC secret.
pub(crate) const HMAC_KID: &str = "centrifugo-hmac";

/// A signed-in user of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub project: ProjectId,
    pub id: String,
}

/// One channel's outcome in a batch.
#[derive(Debug)]
pub struct BatchItem {
    pub channel: String,
    pub result: Result<String, ServiceError>,
}

fn invalid_channel(message: String) -> ServiceError {
    ServiceError::Validation(vec![FieldError::new("invalid_channel", "channel", message)])
}

impl Tollgate {
    /// Identifies the user behind an app-facing Bearer token: a subscriber SAT Tollgate
    /// issued (the user id is its `reference`), or a user JWT of the application, verified
    /// with the key registered for its exact `iss`. Anything else — an API key, a PubSub
    /// token, a refresh token, a guest SAT — is `Unauthorized`.
    pub async fn authenticate_user(&self, bearer: &str) -> Result<User, ServiceError> {
        if bearer.len() > MAX_BEARER_LEN {
            return Err(ServiceError::Unauthorized);
        }
        if bearer.split('.').count() == 5 {
            let sat = self.authenticate_sat(bearer).await?;
            return match (sat.payload.kind, sat.payload.reference) {
                (TokenKind::Subscriber, Some(reference)) => Ok(User {
                    project: sat.payload.prj,
                    id: reference,
                }),
                _ => Err(ServiceError::Unauthorized),
            };
        }
        let claims =
            jose::peek_claims(bearer, MAX_BEARER_LEN).map_err(|_| ServiceError::Unauthorized)?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(ServiceError::Unauthorized)?;
        let record = self
            .inner
            .store
            .user_auth_key(issuer)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let key = if record.alg == JWKS_ALG {
            let header = jose::peek_header(bearer, MAX_BEARER_LEN)
                .map_err(|_| ServiceError::Unauthorized)?;
            let kid = header
                .get("kid")
                .and_then(Value::as_str)
                .ok_or(ServiceError::Unauthorized)?;
            self.inner
                .jwks
                .key(&record.key_data, kid)
                .await?
                .ok_or(ServiceError::Unauthorized)?
        } else {
            std::sync::Arc::new(self.user_auth_verifier(&record)?)
        };
        let verified = jose::verify_pinned(bearer, MAX_BEARER_LEN, &key).map_err(|e| {
            tracing::debug!(reason = %e, "user JWT refused");
            ServiceError::Unauthorized
        })?;
        let policy = UserJwtPolicy {
            issuer: record.issuer.clone(),
            audience: record.audience.clone(),
        };
        let id =
            centrifugo::validate_user_claims(&verified.claims, &policy, self.inner.clock.now())
                .map_err(|e| {
                    tracing::debug!(reason = %e, "user JWT claims refused");
                    ServiceError::Unauthorized
                })?;
        // The `sub` becomes the user id of every token minted from here on, so it must
        // follow the id grammar. A genuine token (the signature checked out) failing it is
        // the application's choice of ids, so the operator is told which rule.
        if id.parse::<UserId>().is_err() {
            tracing::info!(
                issuer = %record.issuer,
                "user JWT refused: its sub is not a valid user id ({})",
                tollgate_token::ids::ID_RULE
            );
            return Err(ServiceError::Unauthorized);
        }
        Ok(User {
            project: record.project_id,
            id,
        })
    }

    fn user_auth_verifier(&self, r: &UserAuthKeyRecord) -> Result<VerifyingKey, ServiceError> {
        let kid: KeyId = "app"
            .parse()
            .map_err(|_| ServiceError::Internal("kid".into()))?;
        let alg: Algorithm = r
            .alg
            .parse()
            .map_err(|_| ServiceError::Internal(format!("user auth key {} alg", r.id)))?;
        let bad = |what: &str| ServiceError::Internal(format!("user auth key {}: {what}", r.id));
        if alg.is_symmetric() {
            let secret = self
                .inner
                .secrets
                .open(&kid, &r.key_data)
                .map_err(|_| bad("cannot unseal"))?;
            VerifyingKey::hmac(alg, kid, &secret).map_err(|_| bad("secret"))
        } else {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&r.key_data)
                .map_err(|_| bad("key data"))?;
            let key = VerifyingKey::from_spki_der(kid, &der).map_err(|_| bad("public key"))?;
            if key.algorithm() != alg {
                return Err(bad("algorithm"));
            }
            Ok(key)
        }
    }

    /// Registers how to verify an application's user JWTs: an HMAC secret (HS256/384/512)
    /// or a PEM public key (ES256, EdDSA or RS256, from the key itself).
    pub async fn add_user_auth_key(
        &self,
        project: ProjectId,
        issuer: &str,
        audience: &str,
        key: UserAuthKey<'_>,
    ) -> Result<Uuid, ServiceError> {
        if issuer.is_empty() || audience.is_empty() || issuer.len() > 512 || audience.len() > 512 {
            return Err(ServiceError::InvalidInput(
                "issuer and audience must be 1 to 512 characters".into(),
            ));
        }
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        let kid: KeyId = "app"
            .parse()
            .map_err(|_| ServiceError::Internal("kid".into()))?;
        let (alg, key_data) = match key {
            UserAuthKey::Hmac(alg, secret) => {
                VerifyingKey::hmac(alg, kid.clone(), secret).map_err(|_| {
                    ServiceError::InvalidInput(format!(
                        "{alg} needs a secret of at least {} bytes",
                        alg.min_secret_len()
                    ))
                })?;
                let sealed = self
                    .inner
                    .secrets
                    .seal(&kid, secret)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                (alg, sealed)
            }
            UserAuthKey::JwksUrl(url) => {
                crate::jwks::check_url(url, self.inner.settings.jwks_allow_private_hosts)
                    .map_err(ServiceError::InvalidInput)?;
                // The algorithm comes from each fetched key.
                return self
                    .store_user_auth_key(project, issuer, audience, JWKS_ALG, url.to_owned())
                    .await;
            }
            UserAuthKey::PublicPem(pem) => {
                let key = VerifyingKey::from_public_pem(kid, pem).map_err(|_| {
                    ServiceError::InvalidInput(
                        "not a PEM public key of P-256, Ed25519 or RSA (≥ 2048 bits)".into(),
                    )
                })?;
                let body: String = pem
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with("-----"))
                    .collect();
                (key.algorithm(), body.trim().to_owned())
            }
        };
        self.store_user_auth_key(project, issuer, audience, alg.as_str(), key_data)
            .await
    }

    async fn store_user_auth_key(
        &self,
        project: ProjectId,
        issuer: &str,
        audience: &str,
        alg: &str,
        key_data: String,
    ) -> Result<Uuid, ServiceError> {
        let record = UserAuthKeyRecord {
            id: Uuid::new_v4(),
            project_id: project,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            alg: alg.to_owned(),
            key_data,
            created_at: self.inner.clock.now(),
        };
        match self.inner.store.insert_user_auth_key(&record).await {
            Ok(()) => Ok(record.id),
            Err(StoreError::Conflict) => Err(ServiceError::InvalidInput(format!(
                "issuer {issuer:?} is already registered"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// A project's registered user-JWT keys (issuer, audience, kind; never secrets).
    pub async fn user_auth_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<(String, String, String)>, ServiceError> {
        Ok(self
            .inner
            .store
            .user_auth_keys(project)
            .await?
            .into_iter()
            .map(|k| (k.issuer, k.audience, k.alg))
            .collect())
    }

    /// Forgets how to verify `issuer`'s user JWTs (to replace a key: remove, then add).
    pub async fn remove_user_auth_key(
        &self,
        project: ProjectId,
        issuer: &str,
    ) -> Result<(), ServiceError> {
        if self
            .inner
            .store
            .delete_user_auth_key(project, issuer)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("user JWT issuer"))
        }
    }

    /// The project's namespaces: the defaults, overridden or extended by its own (cached
    /// for a few seconds: every subscription-token request needs them).
    pub async fn namespaces(
        &self,
        project: ProjectId,
    ) -> Result<std::sync::Arc<Vec<Namespace>>, ServiceError> {
        if let Some(all) = self.inner.ns_cache.get(&project) {
            return Ok(all);
        }
        let all = std::sync::Arc::new(self.load_namespaces(project).await?);
        self.inner.ns_cache.put(project, all.clone());
        Ok(all)
    }

    async fn load_namespaces(&self, project: ProjectId) -> Result<Vec<Namespace>, ServiceError> {
        let mut all = centrifugo::default_namespaces();
        for r in self.inner.store.namespaces(project).await? {
            let ns = Namespace {
                rule: r
                    .rule
                    .parse()
                    .map_err(|e: String| ServiceError::Internal(e))?,
                id_format: r
                    .id_format
                    .parse()
                    .map_err(|e: String| ServiceError::Internal(e))?,
                token_ttl: r.token_ttl,
                name: r.name,
            };
            all.retain(|d| d.name != ns.name);
            all.push(ns);
        }
        Ok(all)
    }

    /// Adds or replaces a project namespace. Every field is checked again here (name,
    /// the rule's group kind, token lifetime), whoever parsed it, and all failures are
    /// reported together, each naming its field.
    pub async fn put_namespace(
        &self,
        project: ProjectId,
        ns: Namespace,
    ) -> Result<Namespace, ServiceError> {
        let errors = centrifugo::check_namespace(&ns);
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        let record = NamespaceRecord {
            name: ns.name.clone(),
            rule: ns.rule.to_stored(),
            id_format: ns.id_format.as_str().to_owned(),
            token_ttl: ns.token_ttl,
        };
        self.inner
            .store
            .put_namespace(project, &record, self.inner.clock.now())
            .await?;
        self.inner.ns_cache.forget(|p| *p == project);
        self.announce(crate::Invalidation::Namespaces(project));
        Ok(ns)
    }

    /// Removes a project namespace (a default one comes back).
    pub async fn delete_namespace(
        &self,
        project: ProjectId,
        name: &str,
    ) -> Result<(), ServiceError> {
        if self.inner.store.delete_namespace(project, name).await? {
            self.inner.ns_cache.forget(|p| *p == project);
            self.announce(crate::Invalidation::Namespaces(project));
            Ok(())
        } else {
            Err(ServiceError::NotFound("namespace"))
        }
    }

    /// Checks that `user` may subscribe to `channel`; returns the parsed channel and its
    /// namespace. Invalid names are 422, refusals 403.
    async fn authorize(
        &self,
        user: &User,
        namespaces: &[Namespace],
        channel: &str,
    ) -> Result<(Channel, i64), ServiceError> {
        let parsed = centrifugo::parse_channel(channel).map_err(|e| invalid_channel(e.0))?;
        let (access, ns) =
            centrifugo::decide(namespaces, &parsed, &user.id).map_err(|e| invalid_channel(e.0))?;
        let granted = match access {
            Access::Granted => true,
            Access::Denied => false,
            Access::NeedsMembership { kind, id } => {
                self.inner
                    .store
                    .is_member(user.project, &kind, &id, &user.id)
                    .await?
            }
        };
        if granted {
            Ok((parsed, ns.token_ttl))
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// Signs Centrifugo claims: with the shared HMAC secret when one is configured and acts
    /// for this project (so an external Centrifugo accepts them), otherwise with the
    /// project's own key. Another project's tokens never carry the shared secret, which
    /// the gateway would take as the bound project's.
    async fn sign_centrifugo<C: serde::Serialize>(
        &self,
        project: ProjectId,
        claims: &C,
    ) -> Result<String, ServiceError> {
        let extras = HeaderExtras {
            typ: Some("JWT"),
            ch: None,
        };
        let shared = match &self.inner.settings.centrifugo.hmac_secret {
            Some(secret) if self.shared_credentials_project().await? == Some(project) => {
                Some(secret)
            }
            _ => None,
        };
        let key = match shared {
            Some(secret) => std::sync::Arc::new(
                SigningKey::from_secret(
                    Algorithm::HS256,
                    HMAC_KID
                        .parse()
                        .map_err(|_| ServiceError::Internal("kid".into()))?,
                    secret,
                )
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            ),
            None => {
                self.inner
                    .keys
                    .active(&*self.inner.store, &self.inner.secrets, project)
                    .await?
            }
        };
        jose::sign(&key, extras, claims).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// A subscription token for one channel, optionally carrying channel `info` (shown to
    /// others in presence and join/leave).
    pub async fn subscription_token(
        &self,
        user: &User,
        channel: &str,
        info: Option<Value>,
    ) -> Result<String, ServiceError> {
        let namespaces = self.namespaces(user.project).await?;
        self.subscription_token_in(user, &namespaces, channel, None, info)
            .await
    }

    async fn subscription_token_in(
        &self,
        user: &User,
        namespaces: &[Namespace],
        channel: &str,
        client: Option<&str>,
        info: Option<Value>,
    ) -> Result<String, ServiceError> {
        let (parsed, ttl) = self.authorize(user, namespaces, channel).await?;
        let now = self.inner.clock.now();
        let claims = SubscriptionClaims {
            iss: self.inner.settings.issuer.clone(),
            aud: user.project.to_string(),
            sub: user.id.clone(),
            channel: parsed.name,
            iat: now.seconds(),
            exp: now.plus(ttl).seconds(),
            jti: Uuid::new_v4().to_string(),
            client: client.map(str::to_owned),
            info,
            b64info: None,
        };
        self.sign_centrifugo(user.project, &claims).await
    }

    /// Subscription tokens for many channels in one request, each with its own outcome.
    pub async fn subscription_tokens(
        &self,
        user: &User,
        channels: &[String],
        client: Option<&str>,
    ) -> Result<Vec<BatchItem>, ServiceError> {
        if let Some(client) = client {
            check_client_id(client)?;
        }
        if channels.is_empty() || channels.len() > MAX_BATCH_CHANNELS {
            return Err(ServiceError::Validation(vec![FieldError::new(
                "invalid_parameter",
                "channels",
                format!("Channels must list 1 to {MAX_BATCH_CHANNELS} channels"),
            )]));
        }
        let namespaces = self.namespaces(user.project).await?;
        let mut out = Vec::with_capacity(channels.len());
        for channel in channels {
            let result = self
                .subscription_token_in(user, &namespaces, channel, client, None)
                .await;
            if let Err(ServiceError::Unavailable(_) | ServiceError::Internal(_)) = &result {
                // A store failure is the whole request's failure, not one channel's.
                return result.map(|_| Vec::new());
            }
            out.push(BatchItem {
                channel: channel.clone(),
                result,
            });
        }
        Ok(out)
    }

    /// A Centrifugo connection token for the user (never a `channel` claim).
    pub async fn connection_token(
        &self,
        user: &User,
        info: Option<Value>,
    ) -> Result<String, ServiceError> {
        let now = self.inner.clock.now();
        let claims = ConnectionClaims {
            iss: self.inner.settings.issuer.clone(),
            aud: user.project.to_string(),
            sub: user.id.clone(),
            iat: now.seconds(),
            exp: now.plus(centrifugo::DEFAULT_CONNECTION_TTL).seconds(),
            jti: Uuid::new_v4().to_string(),
            info,
            meta: None,
        };
        self.sign_centrifugo(user.project, &claims).await
    }

    /// Adds `user` to group `kind:id` of the caller's project. The ids are typed: they
    /// were parsed against the id grammar where they arrived.
    pub async fn add_member(
        &self,
        principal: &Principal,
        kind: &GroupKind,
        group: &GroupId,
        user: &UserId,
    ) -> Result<bool, ServiceError> {
        Ok(self
            .inner
            .store
            .put_member(
                principal.project_id,
                kind.as_str(),
                group.as_str(),
                user.as_str(),
                self.inner.clock.now(),
            )
            .await?)
    }

    /// Removes `user` from group `kind:id`. Any id an earlier version could have stored is
    /// accepted ([`stored_group`]), so members added before the id grammar can be removed.
    pub async fn remove_member(
        &self,
        principal: &Principal,
        kind: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ServiceError> {
        stored_group(kind, group, Some(user))?;
        if self
            .inner
            .store
            .delete_member(principal.project_id, kind, group, user)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("member"))
        }
    }

    /// A group's members (lookups accept stored ids of earlier versions, as
    /// [`Tollgate::remove_member`] does).
    pub async fn members(
        &self,
        principal: &Principal,
        kind: &str,
        group: &str,
    ) -> Result<Vec<(String, UnixTime)>, ServiceError> {
        stored_group(kind, group, None)?;
        Ok(self
            .inner
            .store
            .members(principal.project_id, kind, group)
            .await?)
    }

    /// Rotates the project's signing key to a new one of `alg`: it signs from now on, and
    /// the old key keeps verifying (and stays in the JWKS) until `retire_after` seconds
    /// from now, then retires.
    pub async fn rotate_signing_key(
        &self,
        project: ProjectId,
        alg: Algorithm,
        retire_after: i64,
    ) -> Result<KeyId, ServiceError> {
        if !(MIN_RETIRE_AFTER..=MAX_RETIRE_AFTER).contains(&retire_after) {
            return Err(ServiceError::InvalidInput(format!(
                "retire_after must be {MIN_RETIRE_AFTER} to {MAX_RETIRE_AFTER} seconds: every \
                 node must have switched to the new key before the old one stops verifying"
            )));
        }
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        let now = self.inner.clock.now();
        let record = crate::keys::generate_record_with(&self.inner.secrets, project, now, alg)?;
        let kid = record.kid.clone();
        self.inner
            .store
            .rotate_signing_key(&record, now.plus(retire_after))
            .await?;
        self.inner.keys.forget_project(project);
        self.announce(crate::Invalidation::Keys(project));
        Ok(kid)
    }

    /// Every signing key of a project with its state (a retiring key past its end is
    /// reported as retired).
    pub async fn signing_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<SigningKeyRecord>, ServiceError> {
        let now = self.inner.clock.now();
        let mut keys = self.inner.store.all_signing_keys(project).await?;
        for k in &mut keys {
            if k.state == tollgate_store::KeyState::Retiring
                && k.not_after.is_some_and(|t| t <= now)
            {
                k.state = tollgate_store::KeyState::Retired;
            }
        }
        Ok(keys)
    }

    /// The JWKS: public keys of every live asymmetric signing key, of one project or of
    /// all. Shared secrets never appear.
    pub async fn jwks(&self, project: Option<ProjectId>) -> Result<Value, ServiceError> {
        let now = self.inner.clock.now();
        let mut keys = Vec::new();
        for record in self.inner.store.live_signing_keys(now).await? {
            if record.alg.is_symmetric() || project.is_some_and(|p| p != record.project_id) {
                continue;
            }
            if let Some(key) = self.verifying_key(&record.kid).await?
                && let Some(jwk) = key.to_jwk()
            {
                keys.push(Value::Object(jwk));
            }
        }
        Ok(json!({ "keys": keys }))
    }
}

/// A user-JWT verification key to register.
#[derive(Debug)]
pub enum UserAuthKey<'a> {
    Hmac(Algorithm, &'a [u8]),
    PublicPem(&'a str),
    /// Keys fetched (and cached) from the application's JWKS; tokens must name a `kid`.
    JwksUrl(&'a str),
}

/// Checks the ids of a membership *lookup*: what earlier versions accepted (a namespace-
/// grammar kind; printable ASCII ids of at most 255 bytes), so rows they stored can still
/// be listed and removed. New memberships are held to the id grammar instead
/// ([`GroupKind`], [`GroupId`], [`UserId`]). Every failed field is named.
fn stored_group(kind: &str, group: &str, user: Option<&str>) -> Result<(), ServiceError> {
    let mut errors = Vec::new();
    if !centrifugo::valid_name(kind) {
        errors.push(FieldError::new(
            "invalid_parameter",
            "kind",
            format!("kind must be {}", GroupKind::RULE),
        ));
    }
    let rule = "printable ASCII without spaces, 1 to 255 characters";
    if !stored_id(group) {
        errors.push(FieldError::new(
            "invalid_parameter",
            "id",
            format!("id must be {rule}"),
        ));
    }
    if user.is_some_and(|u| !stored_id(u)) {
        errors.push(FieldError::new(
            "invalid_parameter",
            "user_id",
            format!("user_id must be {rule}"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(errors))
    }
}

/// A client id is echoed into every token of a batch: 1 to [`MAX_CLIENT_ID_LEN`] visible
/// ASCII characters (Centrifugo's own ids are UUIDs).
fn check_client_id(client: &str) -> Result<(), ServiceError> {
    if client.is_empty()
        || client.len() > MAX_CLIENT_ID_LEN
        || !client.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServiceError::Validation(vec![FieldError::new(
            "invalid_parameter",
            "client",
            format!("client must be 1 to {MAX_CLIENT_ID_LEN} visible ASCII characters"),
        )]));
    }
    Ok(())
}
