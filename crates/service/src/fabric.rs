//! Fabric use cases: subscriber access tokens (SATs), refresh-token rotation with replay
//! detection and device binding, guest and invite tokens, and the Subscribers resource.
//!
//! SATs and refresh tokens are `dir`/`A256GCM` JWEs under the project's encryption key;
//! their payload is ours ([`SatPayload`]) and unreadable to anyone else. Refresh tokens are
//! recorded by id only, in families: spending one records its successor atomically, and
//! spending one twice revokes the family (RFC 9700 §4.14.2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tollgate_store::{
    AddressRecord, EmbedKeyRecord, FamilyRecord, Login, NewRefreshToken, Rotation, StoreError,
    SubscriberProfile, SubscriberRecord,
};
use tollgate_token::fabric::{self, Profile, SCOPE_SAT_REFRESH};
use tollgate_token::jose::{dpop, jwe};
use tollgate_token::validation::FieldError;
use tollgate_token::{ProjectId, Scope, UnixTime};
use uuid::Uuid;

use crate::{Principal, ServiceError, Tollgate, password};

/// API-token scopes that open every Fabric endpoint (any one suffices).
pub const FABRIC_SCOPES: [Scope; 4] = [Scope::Calling, Scope::Messaging, Scope::Fax, Scope::Video];

/// JOSE `typ` of access tokens.
pub const TYP_SAT: &str = "SAT";
/// JOSE `typ` of refresh tokens.
pub const TYP_REFRESH: &str = "Refresh";
/// Longest subscriber token accepted.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Path of the refresh endpoint, which DPoP proofs must name.
pub const REFRESH_PATH: &str = "/api/fabric/subscribers/tokens/refresh";

/// What a family of tokens was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Subscriber,
    Guest,
    Invite,
    Embed,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Subscriber => "subscriber",
            TokenKind::Guest => "guest",
            TokenKind::Invite => "invite",
            TokenKind::Embed => "embed",
        }
    }
}

/// RFC 7800 confirmation: the thumbprint of the device key a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    pub jkt: String,
}

/// The encrypted payload of SATs and refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SatPayload {
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// When the family began (the original login); bounds how long refreshing may go on.
    pub auth_time: i64,
    /// Project.
    pub prj: ProjectId,
    /// Token family (one login and everything refreshed from it).
    pub fam: Uuid,
    pub kind: TokenKind,
    /// Subscriber id, for subscriber tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    /// The subscriber's reference.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Application id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Uuid>,
    /// Addresses a guest or invite token may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addr: Vec<Uuid>,
}

impl SatPayload {
    /// The payload of a new login's first token: fresh ids, no scope, binding or addresses.
    fn login(
        kind: TokenKind,
        project: ProjectId,
        family: Uuid,
        now: UnixTime,
        exp: UnixTime,
    ) -> Self {
        Self {
            jti: Uuid::new_v4(),
            iat: now.seconds(),
            auth_time: now.seconds(),
            exp: exp.seconds(),
            prj: project,
            fam: family,
            kind,
            sub: None,
            reference: None,
            scope: Vec::new(),
            cnf: None,
            app: None,
            addr: Vec::new(),
        }
    }

    fn refreshable(&self) -> bool {
        self.scope.iter().any(|s| s == SCOPE_SAT_REFRESH)
    }
}

/// A validated SAT, as `GET /api/fabric/subscriber/info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SatInfo {
    pub payload: SatPayload,
}

/// A freshly issued access token with its refresh token.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub subscriber_id: Option<Uuid>,
    pub token: String,
    pub refresh_token: Option<String>,
}

/// Who may call guest and invite endpoints: a project API token or a subscriber's SAT.
#[derive(Debug, Clone)]
pub enum FabricCaller {
    Project(Principal),
    Subscriber(SatInfo),
}

impl FabricCaller {
    /// The project acted on and, for a subscriber caller, the subscriber. Only subscriber
    /// SATs act for a subscriber: a guest, invite or embed token grants no further tokens.
    fn context(&self) -> Result<(ProjectId, Option<Uuid>), ServiceError> {
        match self {
            FabricCaller::Project(p) => {
                p.require_any(&FABRIC_SCOPES)?;
                Ok((p.project_id, None))
            }
            FabricCaller::Subscriber(s) => match (s.payload.kind, s.payload.sub) {
                (TokenKind::Subscriber, Some(sub)) => Ok((s.payload.prj, Some(sub))),
                _ => Err(ServiceError::Unauthorized),
            },
        }
    }
}

/// A page of subscribers and the cursor of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct SubscriberPage {
    pub items: Vec<SubscriberRecord>,
    pub next: Option<Uuid>,
}

/// A new token family of `kind`, belonging to `subscriber` if any.
fn new_family(
    project: ProjectId,
    subscriber: Option<Uuid>,
    kind: TokenKind,
    now: UnixTime,
) -> FamilyRecord {
    FamilyRecord {
        id: Uuid::new_v4(),
        project_id: project,
        subscriber_id: subscriber,
        kind: kind.as_str().into(),
        created_at: now,
        revoked_at: None,
    }
}

fn invalid_refresh(code: &'static str, message: &str) -> ServiceError {
    ServiceError::Validation(vec![FieldError::new(code, "refresh_token", message)])
}

fn token_invalid() -> ServiceError {
    invalid_refresh("token_invalid", "The provided token is invalid.")
}

fn to_store_profile(p: Profile) -> SubscriberProfile {
    SubscriberProfile {
        first_name: p.first_name,
        last_name: p.last_name,
        display_name: p.display_name,
        job_title: p.job_title,
        timezone: p.timezone,
        country: p.country,
        company_name: p.company_name,
    }
}

/// The subscriber's first address: `/private/<slug of the reference>`.
fn first_address(s: &SubscriberRecord) -> AddressRecord {
    let slug: String = s
        .reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    AddressRecord {
        id: Uuid::new_v4(),
        project_id: s.project_id,
        subscriber_id: s.id,
        name: format!("/private/{slug}"),
        display_name: s
            .profile
            .display_name
            .clone()
            .unwrap_or_else(|| s.reference.clone()),
        created_at: s.created_at,
    }
}

impl Tollgate {
    fn max_lifetime(&self) -> i64 {
        self.inner.settings.max_subscriber_token_lifetime
    }

    /// Whether `address` is in `project` and, when acting for a subscriber, is theirs.
    async fn address_usable(
        &self,
        project: ProjectId,
        acting_for: Option<Uuid>,
        address: Uuid,
    ) -> Result<bool, ServiceError> {
        Ok(match self.inner.store.address(project, address).await? {
            Some(a) => acting_for.is_none_or(|sub| a.subscriber_id == sub),
            None => false,
        })
    }

    async fn encrypt(&self, typ: &str, payload: &SatPayload) -> Result<String, ServiceError> {
        let key = self
            .inner
            .keys
            .active_encryption(
                &*self.inner.store,
                &self.inner.secrets,
                payload.prj,
                self.inner.clock.now(),
            )
            .await?;
        let Value::Object(map) =
            serde_json::to_value(payload).map_err(|e| ServiceError::Internal(e.to_string()))?
        else {
            return Err(ServiceError::Internal("payload is not an object".into()));
        };
        jwe::encrypt(
            &key,
            typ,
            self.inner.settings.public_gateway_url.as_deref(),
            &map,
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Decrypts one of our JWEs. Unknown keys, tampering and garbage are all `None`.
    async fn decrypt(&self, token: &str) -> Result<Option<(String, SatPayload)>, ServiceError> {
        let Ok(kid) = jwe::peek_kid(token, MAX_TOKEN_LEN) else {
            return Ok(None);
        };
        let Some((key, project)) = self
            .inner
            .keys
            .decryption(
                &*self.inner.store,
                &self.inner.secrets,
                &kid,
                self.inner.clock.now(),
            )
            .await?
        else {
            return Ok(None);
        };
        let Ok(decrypted) = jwe::decrypt(token, MAX_TOKEN_LEN, |_| Some(&*key)) else {
            return Ok(None);
        };
        let typ = decrypted.typ().unwrap_or_default().to_owned();
        let Ok(payload) = serde_json::from_value::<SatPayload>(Value::Object(decrypted.payload))
        else {
            return Ok(None);
        };
        // The key binds the project: a payload claiming another one is forged or corrupt.
        if payload.prj != project {
            return Ok(None);
        }
        Ok(Some((typ, payload)))
    }

    /// Issues the SAT and (for refreshable kinds) the refresh token of a new login.
    fn login_payloads(
        &self,
        base: SatPayload,
        with_refresh: bool,
    ) -> (SatPayload, Option<SatPayload>) {
        let refresh = with_refresh.then(|| SatPayload {
            jti: Uuid::new_v4(),
            exp: base.exp + fabric::REFRESH_GRACE,
            ..base.clone()
        });
        (base, refresh)
    }

    async fn mint(
        &self,
        sat: &SatPayload,
        refresh: Option<&SatPayload>,
    ) -> Result<IssuedTokens, ServiceError> {
        let token = self.encrypt(TYP_SAT, sat).await?;
        let refresh_token = match refresh {
            Some(r) => Some(self.encrypt(TYP_REFRESH, r).await?),
            None => None,
        };
        Ok(IssuedTokens {
            subscriber_id: sat.sub,
            token,
            refresh_token,
        })
    }

    /// `POST /api/fabric/subscribers/tokens`: creates or updates the subscriber named by
    /// `reference` and starts a new token family for it.
    pub async fn create_subscriber_token(
        &self,
        principal: &Principal,
        body: &Map<String, Value>,
    ) -> Result<IssuedTokens, ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        let now = self.inner.clock.now();
        let req = fabric::parse_subscriber_token(body, now, self.max_lifetime())
            .map_err(ServiceError::Validation)?;
        let password_hash = match req.password {
            Some(pw) => Some(password::hash(pw).await?),
            None => None,
        };
        let subscriber = SubscriberRecord {
            id: Uuid::new_v4(),
            project_id: principal.project_id,
            reference: req.reference.clone(),
            profile: to_store_profile(req.profile),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let address = first_address(&subscriber);
        let mut scope = Vec::new();
        if req.refreshable {
            scope.push(SCOPE_SAT_REFRESH.to_owned());
        }
        let family = Uuid::new_v4();
        let base = SatPayload {
            reference: Some(req.reference),
            scope,
            cnf: req.fingerprint.map(|jkt| Confirmation { jkt }),
            app: req.application_id,
            ..SatPayload::login(
                TokenKind::Subscriber,
                principal.project_id,
                family,
                now,
                req.expires_at,
            )
        };
        let (mut sat, refresh) = self.login_payloads(base, true);
        let mut refresh = refresh.ok_or_else(|| ServiceError::Internal("no refresh".into()))?;
        let login = Login {
            family_id: family,
            kind: TokenKind::Subscriber.as_str().into(),
            first_refresh: NewRefreshToken {
                jti: refresh.jti,
                family_id: family,
                parent_jti: None,
                expires_at: UnixTime(refresh.exp),
                created_at: now,
            },
        };
        let stored = self
            .inner
            .store
            .upsert_subscriber(&subscriber, &address, Some(&login))
            .await?;
        sat.sub = Some(stored.id);
        refresh.sub = Some(stored.id);
        self.mint(&sat, Some(&refresh)).await
    }

    /// `POST /api/fabric/subscribers/tokens/refresh`: spends a refresh token for a new pair.
    ///
    /// `caller` is the project authenticated by Basic auth, if any; `dpop` the `DPoP` header.
    /// A token bound to a device needs a valid proof from that device; with one, and the
    /// `sat:refresh` scope, the device may refresh without project credentials.
    pub async fn refresh_subscriber_token(
        &self,
        caller: Option<&Principal>,
        dpop_proof: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<IssuedTokens, ServiceError> {
        if let Some(p) = caller {
            p.require_any(&FABRIC_SCOPES)?;
        }
        let token = match body.get("refresh_token") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(invalid_refresh(
                    "missing_required_parameter",
                    fabric_missing(),
                ));
            }
            Some(_) => {
                return Err(invalid_refresh(
                    "invalid_token_format",
                    "Refresh Token must be formatted as a string",
                ));
            }
        };
        // One reading of the clock: the leeway below needs milliseconds, claims seconds.
        let now_ms = self.inner.clock.now_millis();
        let now = UnixTime(now_ms.div_euclid(1000));
        let Some((typ, old)) = self.decrypt(token).await? else {
            return Err(token_invalid());
        };
        if let Some(p) = caller
            && p.project_id != old.prj
        {
            return Err(ServiceError::Unauthorized);
        }
        if typ != TYP_REFRESH {
            return Err(invalid_refresh(
                "not_a_refresh_token",
                "Invalid token type. You must use a Refresh token.",
            ));
        }
        if self.payload_revoked(&old) {
            return Err(token_invalid());
        }
        if old.exp <= now.seconds()
            || now.seconds() - old.auth_time > self.inner.settings.max_family_lifetime
        {
            return Err(invalid_refresh("token_expired", "Token has expired."));
        }
        match (&old.cnf, caller) {
            (Some(cnf), _) => {
                let proof = dpop_proof.ok_or(ServiceError::Unauthorized)?;
                let checked = dpop::verify_proof(proof, "POST", REFRESH_PATH, &cnf.jkt, now)
                    .map_err(|_| ServiceError::Unauthorized)?;
                if caller.is_none() && !old.refreshable() {
                    return Err(ServiceError::Unauthorized);
                }
                let proof_id = format!("{}:{}", checked.jkt, checked.jti);
                let until = now.plus(2 * dpop::MAX_CLOCK_SKEW);
                if !self
                    .inner
                    .store
                    .record_dpop_proof(&proof_id, until, now)
                    .await?
                {
                    return Err(ServiceError::Unauthorized);
                }
            }
            (None, None) => return Err(ServiceError::Unauthorized),
            (None, Some(_)) => {}
        }
        if let Some(sub) = old.sub
            && self.inner.store.subscriber(old.prj, sub).await?.is_none()
        {
            return Err(token_invalid());
        }

        let lifetime = if old.refreshable() && old.cnf.is_none() {
            fabric::UNBOUND_REFRESHABLE_LIFETIME
        } else {
            fabric::DEFAULT_LIFETIME.min(self.max_lifetime())
        };
        let sat = SatPayload {
            jti: Uuid::new_v4(),
            iat: now.seconds(),
            exp: now.plus(lifetime).seconds(),
            ..old.clone()
        };
        let (sat, refresh) = self.login_payloads(sat, true);
        let refresh = refresh.ok_or_else(|| ServiceError::Internal("no refresh".into()))?;
        let next = NewRefreshToken {
            jti: refresh.jti,
            family_id: old.fam,
            parent_jti: Some(old.jti),
            expires_at: UnixTime(refresh.exp),
            created_at: now,
        };
        // Encrypt first: once the old token is spent, nothing may fail before the answer,
        // or a client's retry would look like a replay.
        let issued = self.mint(&sat, Some(&refresh)).await?;
        match self
            .inner
            .store
            .rotate_refresh_token(
                old.fam,
                old.jti,
                &next,
                now_ms,
                self.inner
                    .settings
                    .refresh_reuse_leeway
                    .saturating_mul(1000),
            )
            .await?
        {
            Rotation::Rotated => Ok(issued),
            Rotation::Contended => Err(token_invalid()),
            Rotation::Reused => {
                self.inner
                    .sat_cache
                    .forget(|(_, family, _)| *family == old.fam);
                self.announce(crate::Invalidation::Sats(old.prj));
                tracing::warn!(family = %old.fam, project = %old.prj,
                    "refresh token replayed; token family revoked");
                Err(token_invalid())
            }
            Rotation::Unknown => Err(token_invalid()),
        }
    }

    /// Whether a SAT or refresh token was revoked: by its `jti`, or by its subscriber.
    fn payload_revoked(&self, payload: &SatPayload) -> bool {
        let jti = payload.jti.to_string();
        let subject = payload.sub.map(|s| s.to_string()).unwrap_or_default();
        self.is_revoked(
            payload.prj,
            tollgate_token::revocation::Presented {
                jti: Some(&jti),
                subject: &subject,
                issued_at: Some(payload.iat),
            },
        )
    }

    /// Validates a SAT presented as a bearer credential: ours, unexpired, its family and
    /// subscriber still alive. Everything else is `Unauthorized`.
    pub async fn authenticate_sat(&self, token: &str) -> Result<SatInfo, ServiceError> {
        let (typ, payload) = self
            .decrypt(token)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        if typ != TYP_SAT || payload.exp <= self.inner.clock.now().seconds() {
            return Err(ServiceError::Unauthorized);
        }
        if self.payload_revoked(&payload) {
            return Err(ServiceError::Unauthorized);
        }
        // The token is authentic and unexpired; what remains is whether its family was
        // revoked or its subscriber deleted since, which a few seconds' cache answers.
        if self
            .inner
            .sat_cache
            .get(&(payload.prj, payload.fam, payload.sub))
            .is_some()
        {
            return Ok(SatInfo { payload });
        }
        let family = self
            .inner
            .store
            .family(payload.fam)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        if family.revoked_at.is_some() || family.project_id != payload.prj {
            return Err(ServiceError::Unauthorized);
        }
        if let Some(sub) = payload.sub
            && self
                .inner
                .store
                .subscriber(payload.prj, sub)
                .await?
                .is_none()
        {
            return Err(ServiceError::Unauthorized);
        }
        self.inner
            .sat_cache
            .put((payload.prj, payload.fam, payload.sub), ());
        Ok(SatInfo { payload })
    }

    /// `POST /api/fabric/guests/tokens`.
    pub async fn create_guest_token(
        &self,
        caller: &FabricCaller,
        body: &Map<String, Value>,
    ) -> Result<IssuedTokens, ServiceError> {
        let (project, acting_for) = caller.context()?;
        let now = self.inner.clock.now();
        let req = fabric::parse_guest_token(body, now, self.max_lifetime())
            .map_err(ServiceError::Validation)?;
        for id in &req.allowed_addresses {
            if !self.address_usable(project, acting_for, *id).await? {
                return Err(ServiceError::Validation(vec![FieldError::new(
                    "unrecognized_fabric_addresses",
                    "allowed_addresses",
                    "The addresses must belong to the project",
                )]));
            }
        }
        // Tokens a subscriber hands out die with that subscriber.
        let family = new_family(project, acting_for, TokenKind::Guest, now);
        let base = SatPayload {
            addr: req.allowed_addresses,
            ..SatPayload::login(TokenKind::Guest, project, family.id, now, req.expires_at)
        };
        let (sat, refresh) = self.login_payloads(base, true);
        let refresh = refresh.ok_or_else(|| ServiceError::Internal("no refresh".into()))?;
        let first = NewRefreshToken {
            jti: refresh.jti,
            family_id: family.id,
            parent_jti: None,
            expires_at: UnixTime(refresh.exp),
            created_at: now,
        };
        self.inner
            .store
            .insert_family(&family, Some(&first))
            .await?;
        self.mint(&sat, Some(&refresh)).await
    }

    /// `POST /api/fabric/subscriber/invites`: an access token (no refresh token) that
    /// reaches one address.
    pub async fn create_invite_token(
        &self,
        caller: &FabricCaller,
        body: &Map<String, Value>,
    ) -> Result<IssuedTokens, ServiceError> {
        let (project, acting_for) = caller.context()?;
        let now = self.inner.clock.now();
        let req = fabric::parse_invite_token(body, now, self.max_lifetime())
            .map_err(ServiceError::Validation)?;
        if !self
            .address_usable(project, acting_for, req.address_id)
            .await?
        {
            return Err(ServiceError::Validation(vec![FieldError::new(
                "invalid_parameter",
                "address_id",
                "Address is invalid",
            )]));
        }
        let family = new_family(project, acting_for, TokenKind::Invite, now);
        self.inner.store.insert_family(&family, None).await?;
        let sat = SatPayload {
            addr: vec![req.address_id],
            ..SatPayload::login(TokenKind::Invite, project, family.id, now, req.expires_at)
        };
        self.mint(&sat, None).await
    }

    /// Subscribers: create. The email is the subscriber's reference.
    pub async fn create_subscriber(
        &self,
        principal: &Principal,
        body: &Map<String, Value>,
    ) -> Result<SubscriberRecord, ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        let req = fabric::parse_subscriber(body, true).map_err(ServiceError::Validation)?;
        let email = req
            .email
            .ok_or_else(|| ServiceError::Internal("email checked".into()))?;
        let pw = req.password.unwrap_or_else(password::random);
        let now = self.inner.clock.now();
        let record = SubscriberRecord {
            id: Uuid::new_v4(),
            project_id: principal.project_id,
            reference: email,
            profile: to_store_profile(req.profile),
            password_hash: Some(password::hash(pw).await?),
            created_at: now,
            updated_at: now,
        };
        match self
            .inner
            .store
            .insert_subscriber(&record, &first_address(&record))
            .await
        {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict) => Err(email_taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Subscribers: one.
    pub async fn subscriber(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<SubscriberRecord, ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        self.inner
            .store
            .subscriber(principal.project_id, id)
            .await?
            .ok_or(ServiceError::NotFound("subscriber"))
    }

    /// Subscribers: a page, after the subscriber `after`.
    pub async fn list_subscribers(
        &self,
        principal: &Principal,
        after: Option<Uuid>,
        page_size: u32,
    ) -> Result<SubscriberPage, ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        if let Some(after) = after
            && self
                .inner
                .store
                .subscriber(principal.project_id, after)
                .await?
                .is_none()
        {
            return Err(ServiceError::Validation(vec![FieldError::new(
                "page_token_is_invalid",
                "page_token",
                "Page Token is invalid",
            )]));
        }
        // One extra row tells whether a next page exists without a count query.
        let mut items = self
            .inner
            .store
            .list_subscribers(principal.project_id, after, page_size + 1)
            .await?;
        let next = if items.len() > page_size as usize {
            items.truncate(page_size as usize);
            items.last().map(|s| s.id)
        } else {
            None
        };
        Ok(SubscriberPage { items, next })
    }

    /// Subscribers: update the given fields (PUT and PATCH alike).
    pub async fn update_subscriber(
        &self,
        principal: &Principal,
        id: Uuid,
        body: &Map<String, Value>,
    ) -> Result<SubscriberRecord, ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        let req = fabric::parse_subscriber(body, false).map_err(ServiceError::Validation)?;
        let password_hash = match req.password {
            Some(pw) => Some(password::hash(pw).await?),
            None => None,
        };
        let now = self.inner.clock.now();
        match self
            .inner
            .store
            .update_subscriber(
                principal.project_id,
                id,
                req.email.as_deref(),
                &to_store_profile(req.profile),
                password_hash.as_deref(),
                now,
            )
            .await
        {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(ServiceError::NotFound("subscriber")),
            Err(StoreError::Conflict) => Err(email_taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Subscribers: delete. Its tokens stop working at once.
    pub async fn delete_subscriber(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        principal.require_any(&FABRIC_SCOPES)?;
        if self
            .inner
            .store
            .delete_subscriber(principal.project_id, id)
            .await?
        {
            self.inner.sat_cache.clear();
            self.announce(crate::Invalidation::Sats(principal.project_id));
            Ok(())
        } else {
            Err(ServiceError::NotFound("subscriber"))
        }
    }

    /// Subscribers: a subscriber's addresses.
    pub async fn subscriber_addresses(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<Vec<AddressRecord>, ServiceError> {
        self.subscriber(principal, id).await?;
        Ok(self
            .inner
            .store
            .subscriber_addresses(principal.project_id, id)
            .await?)
    }
}

/// Lifetime of an embed (click-to-call) SAT: one hour, as SignalWire's SDK assumes.
pub const EMBED_LIFETIME: i64 = 60 * 60;

/// A click-to-call embed token (`c2c_` + 32 hex digits), shown once when created.
pub struct EmbedSecret(String);

impl EmbedSecret {
    fn generate() -> Self {
        let bytes: [u8; 16] = tollgate_token::jose::random_bytes();
        Self(format!("c2c_{}", hex::encode(bytes)))
    }

    /// The token text, for showing once. It is public by design (it ships in web pages);
    /// it can only mint short-lived tokens for one address.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmbedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbedSecret([REDACTED])")
    }
}

impl Tollgate {
    /// Creates a click-to-call embed key for one address of `project`.
    pub async fn create_embed_key(
        &self,
        project: ProjectId,
        address: Uuid,
    ) -> Result<(Uuid, EmbedSecret), ServiceError> {
        let secret = EmbedSecret::generate();
        let record = EmbedKeyRecord {
            id: Uuid::new_v4(),
            project_id: project,
            address_id: address,
            token_hash: self.inner.secrets.hash_api_token(secret.expose()),
            created_at: self.inner.clock.now(),
            revoked_at: None,
        };
        match self.inner.store.insert_embed_key(&record).await {
            Ok(()) => Ok((record.id, secret)),
            Err(StoreError::NotFound) => Err(ServiceError::NotFound("address in this project")),
            Err(e) => Err(e.into()),
        }
    }

    /// A project's embed keys.
    pub async fn list_embed_keys(
        &self,
        project: ProjectId,
    ) -> Result<Vec<EmbedKeyRecord>, ServiceError> {
        Ok(self.inner.store.list_embed_keys(project).await?)
    }

    /// Revokes an embed key; its `c2c_` token stops minting at once.
    pub async fn revoke_embed_key(&self, project: ProjectId, id: Uuid) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        if self.inner.store.revoke_embed_key(project, id, now).await? {
            self.inner.sat_cache.clear();
            self.announce(crate::Invalidation::Sats(project));
            Ok(())
        } else {
            Err(ServiceError::NotFound("active embed key"))
        }
    }

    /// `POST /api/fabric/embeds/tokens` (no authentication): exchanges a `c2c_` embed token
    /// for a one-hour SAT that reaches the embed's address. An unknown or revoked token is
    /// 403, as SignalWire answers.
    pub async fn create_embed_token(
        &self,
        body: &Map<String, Value>,
    ) -> Result<IssuedTokens, ServiceError> {
        let token = match body.get("token") {
            Some(Value::String(t)) if !t.is_empty() => t,
            _ => {
                return Err(ServiceError::Validation(vec![FieldError::new(
                    "missing_required_parameter",
                    "token",
                    "token is required",
                )]));
            }
        };
        if !token.starts_with("c2c_") || token.len() > 128 {
            return Err(ServiceError::Forbidden);
        }
        let hash = self.inner.secrets.hash_api_token(token);
        let key = self
            .inner
            .store
            .active_embed_key(&hash)
            .await?
            .ok_or(ServiceError::Forbidden)?;
        let now = self.inner.clock.now();
        let family = new_family(key.project_id, None, TokenKind::Embed, now);
        self.inner.store.insert_family(&family, None).await?;
        let exp = now.plus(EMBED_LIFETIME.min(self.max_lifetime()));
        let sat = SatPayload {
            addr: vec![key.address_id],
            ..SatPayload::login(TokenKind::Embed, key.project_id, family.id, now, exp)
        };
        self.mint(&sat, None).await
    }
}

impl Tollgate {
    /// Rotates the project's subscriber-token encryption key. Tokens made with the old key
    /// keep working until they expire: it decrypts for the longest token lifetime (plus the
    /// refresh grace) and then stops.
    pub async fn rotate_subscriber_token_key(
        &self,
        project: ProjectId,
    ) -> Result<tollgate_token::KeyId, ServiceError> {
        if self.inner.store.project(project).await?.is_none() {
            return Err(ServiceError::NotFound("project"));
        }
        let now = self.inner.clock.now();
        let retire_until = now.plus(self.max_lifetime() + fabric::REFRESH_GRACE);
        let kid = self
            .inner
            .keys
            .rotate_encryption(
                &*self.inner.store,
                &self.inner.secrets,
                project,
                now,
                retire_until,
            )
            .await?;
        self.announce(crate::Invalidation::Keys(project));
        Ok(kid)
    }
}

fn fabric_missing() -> &'static str {
    tollgate_token::validation::MISSING_MESSAGE
}

fn email_taken() -> ServiceError {
    ServiceError::Validation(vec![FieldError::new(
        "invalid_parameter",
        "email",
        "Email has already been taken",
    )])
}
