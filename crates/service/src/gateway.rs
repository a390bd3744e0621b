//! What the WebSocket gateway asks of the token authority: is this connection token
//! genuine, whose is it and what may it do; is this subscription token valid for this
//! user, channel and client. Errors are split the way Centrifugo's client protocol needs
//! them: expired (the client should refresh) versus invalid (terminal).

use std::sync::Arc;

use serde_json::{Map, Value};
use tollgate_token::jose::{self, Algorithm, VerifyingKey};
use tollgate_token::pubsub::Capability;
use tollgate_token::revocation::Presented;
use tollgate_token::{KeyId, ProjectId, UnixTime};

use crate::{ServiceError, Tollgate};

/// Longest token the gateway reads: PubSub tokens carry up to 500 channel grants.
pub const MAX_GATEWAY_TOKEN_LEN: usize = 512 * 1024;

/// Why a gateway token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayTokenError {
    /// Genuine but past `exp`: the client should get a new one (Centrifugo 109).
    #[error("token expired")]
    Expired,
    /// Anything else (Centrifugo 3500 on connect, 103 on subscribe).
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The token store could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<ServiceError> for GatewayTokenError {
    fn from(e: ServiceError) -> Self {
        GatewayTokenError::Unavailable(e.to_string())
    }
}

/// Per-subscription overrides of namespace options a token may carry (Centrifugo's
/// `override`: each is `{"value": bool}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_push_join_leave: Option<bool>,
    pub force_positioning: Option<bool>,
    pub force_recovery: Option<bool>,
}

/// A server-side subscription: one a connection token asks for (`channels` / `subs`), or
/// the server API's `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSub {
    pub channel: String,
    /// Channel info (`chan_info`) for presence, join/leave and publications.
    pub info: Option<Value>,
    /// Sent to the client in the connect result (`subs[ch].data`).
    pub data: Option<Value>,
    pub overrides: Overrides,
}

/// A verified connection token.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionGrant {
    /// The one project the connection belongs to: the project of the key that verified
    /// the token, or the project the shared Centrifugo secret acts for.
    pub project: ProjectId,
    /// Centrifugo's user id (`sub`); empty for an anonymous token.
    pub user: String,
    /// When the connection expires (`expire_at`, else `exp`), if it does.
    pub expires_at: Option<i64>,
    /// Channel capabilities carried by PubSub/Chat tokens.
    pub caps: Vec<Capability>,
    /// Connection info shown to others (`info`, or `b64info` decoded).
    pub info: Option<Value>,
    /// Server-side subscriptions (`subs`, else `channels`).
    pub subs: Vec<ServerSub>,
    /// The token's `typ` header: `PRT` (PubSub) and `CRT` (Chat) for SignalWire tokens.
    pub typ: Option<String>,
    /// The token's id (`jti`).
    pub jti: Option<String>,
    /// When the token was issued (`iat`), for subject revocations.
    pub issued_at: Option<i64>,
}

impl ConnectionGrant {
    /// What this grant shows a revocation check.
    #[must_use]
    pub fn presented(&self) -> Presented<'_> {
        Presented {
            jti: self.jti.as_deref(),
            subject: &self.user,
            issued_at: self.issued_at,
        }
    }
}

/// A verified subscription token.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionGrant {
    /// When the subscription expires (`expire_at`, else `exp`), if it does.
    pub expires_at: Option<i64>,
    pub info: Option<Value>,
    pub data: Option<Value>,
    pub overrides: Overrides,
}

/// Most server-side subscriptions one connection token may carry; the gateway's own
/// (configurable, lower) channel limit answers 3505 below this hard ceiling.
pub const MAX_TOKEN_SUBS: usize = 4096;

impl Tollgate {
    /// Finds the key for a token — the shared Centrifugo HMAC secret, or a project key by
    /// `kid` — verifies the signature, and decides the one project the token belongs to:
    /// the key's project, or the project the shared secret acts for. Whatever the claims
    /// say: an `aud` naming another project is refused.
    async fn gateway_verify(
        &self,
        token: &str,
    ) -> Result<(ProjectId, Map<String, Value>, Option<String>), GatewayTokenError> {
        let header = jose::peek_header(token, MAX_GATEWAY_TOKEN_LEN)
            .map_err(|_| GatewayTokenError::Invalid("malformed"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let hmac_kid = crate::centrifugo::HMAC_KID;
        let shared = |secret: &[u8]| -> Result<Arc<VerifyingKey>, GatewayTokenError> {
            let kid = hmac_kid
                .parse::<KeyId>()
                .map_err(|_| GatewayTokenError::Invalid("kid"))?;
            VerifyingKey::hmac(Algorithm::HS256, kid, secret)
                .map(Arc::new)
                .map_err(|_| GatewayTokenError::Invalid("hmac"))
        };
        // The key, and the project when the key names one (`None`: the shared secret).
        let (key, project): (Arc<VerifyingKey>, Option<ProjectId>) =
            match (kid, &self.inner.settings.centrifugo.hmac_secret) {
                // The shared secret: tokens Tollgate mints name it by kid; tokens an
                // application signs itself, as for Centrifugo, carry no kid at all.
                (None, Some(secret)) => (shared(secret)?, None),
                (Some(k), Some(secret)) if k == hmac_kid => (shared(secret)?, None),
                (Some(k), _) => {
                    let kid: KeyId = k.parse().map_err(|_| GatewayTokenError::Invalid("kid"))?;
                    let (key, project) = self
                        .project_key(&kid)
                        .await?
                        .ok_or(GatewayTokenError::Invalid("unknown key"))?;
                    (key, Some(project))
                }
                (None, None) => return Err(GatewayTokenError::Invalid("no kid")),
            };
        // The signature first: only a genuine token gets as far as the project question
        // (and its warning in the log).
        let verified = jose::verify_pinned(token, MAX_GATEWAY_TOKEN_LEN, &key)
            .map_err(|_| GatewayTokenError::Invalid("signature"))?;
        let project = match project {
            Some(project) => project,
            None => self.shared_secret_project().await?,
        };
        let claims = verified.claims;
        if names_another_project(claims.get("aud"), project) {
            return Err(GatewayTokenError::Invalid("audience"));
        }
        let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
        Ok((project, claims, typ))
    }

    /// The project a shared-secret token belongs to, or a refusal that tells the operator
    /// which setting is missing.
    async fn shared_secret_project(&self) -> Result<ProjectId, GatewayTokenError> {
        self.shared_credentials_project().await?.ok_or_else(|| {
            tracing::warn!(
                "token signed with centrifugo.token_hmac_secret_key refused: several projects \
                 and no {}",
                crate::PROJECT_SETTING
            );
            GatewayTokenError::Invalid("shared secret acts for no project")
        })
    }

    /// Checks `exp`/`nbf` (no leeway, as Centrifugo) and returns the expiration time:
    /// `expire_at` when present (`0`: never), else `exp`.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<Option<i64>, GatewayTokenError> {
        let now = self.inner.clock.now();
        let exp = match claims.get("exp") {
            None => None,
            Some(v) => Some(numeric_date(v).ok_or(GatewayTokenError::Invalid("exp"))?),
        };
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or(GatewayTokenError::Invalid("nbf"))?;
            if nbf > now.seconds() {
                return Err(GatewayTokenError::Expired);
            }
        }
        if exp.is_some_and(|e| e <= now.seconds()) {
            return Err(GatewayTokenError::Expired);
        }
        match claims.get("expire_at") {
            None | Some(Value::Null) => Ok(exp),
            Some(v) => match v.as_i64() {
                Some(0) => Ok(None),
                Some(at) => Ok(Some(at)),
                None => Err(GatewayTokenError::Invalid("expire_at")),
            },
        }
    }

    /// Verifies a connection token: a Centrifugo connection JWT or a PubSub/Chat token.
    /// A token with a `channel` claim is a subscription token and is refused here.
    pub async fn verify_connection_token(
        &self,
        token: &str,
    ) -> Result<ConnectionGrant, GatewayTokenError> {
        let (project, claims, typ) = self.gateway_verify(token).await?;
        if claims.contains_key("channel") {
            return Err(GatewayTokenError::Invalid(
                "channel claim in a connection token",
            ));
        }
        let user = match claims.get("sub") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(GatewayTokenError::Invalid("sub")),
        };
        let caps = match claims.get("caps") {
            None => Vec::new(),
            Some(v) => serde_json::from_value::<Vec<Capability>>(v.clone())
                .map_err(|_| GatewayTokenError::Invalid("caps"))?,
        };
        let info = info_claim(&claims, "info", "b64info")?;
        let subs = server_subs(&claims)?;
        let expires_at = self.check_times(&claims)?;
        let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
        let issued_at = claims.get("iat").and_then(numeric_date);
        let shown = Presented {
            jti: jti.as_deref(),
            subject: &user,
            issued_at,
        };
        if self.is_revoked(project, shown) {
            return Err(GatewayTokenError::Invalid("revoked"));
        }
        Ok(ConnectionGrant {
            project,
            user,
            expires_at,
            caps,
            info,
            subs,
            typ,
            jti,
            issued_at,
        })
    }

    /// Verifies a subscription token for `channel`, for the connection of `user` in
    /// `project` with client id `client`.
    pub async fn verify_subscription_token(
        &self,
        token: &str,
        project: ProjectId,
        user: &str,
        client: &str,
        channel: &str,
    ) -> Result<SubscriptionGrant, GatewayTokenError> {
        let (token_project, claims, _) = self.gateway_verify(token).await?;
        let claim = |k: &str| claims.get(k).and_then(Value::as_str);
        // A token of one project never opens a channel for a connection of another.
        if token_project != project {
            return Err(GatewayTokenError::Invalid("another project"));
        }
        if claim("channel") != Some(channel) {
            return Err(GatewayTokenError::Invalid("channel"));
        }
        if claim("sub").unwrap_or_default() != user {
            return Err(GatewayTokenError::Invalid("sub"));
        }
        if claim("client").is_some_and(|c| c != client) {
            return Err(GatewayTokenError::Invalid("client"));
        }
        let info = info_claim(&claims, "info", "b64info")?;
        let data = info_claim(&claims, "data", "b64data")?;
        let overrides = overrides(claims.get("override"))?;
        let expires_at = self.check_times(&claims)?;
        let shown = Presented {
            jti: claim("jti"),
            subject: user,
            issued_at: claims.get("iat").and_then(numeric_date),
        };
        if self.is_revoked(project, shown) {
            return Err(GatewayTokenError::Invalid("revoked"));
        }
        Ok(SubscriptionGrant {
            expires_at,
            info,
            data,
            overrides,
        })
    }

    /// The current time, for the gateway's timers.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.inner.clock.now()
    }
}

/// Whether `aud` — a string or an array of strings (RFC 7519 §4.1.3) — names a project
/// other than `project`. Audiences that are not project ids (an application's own
/// `token_audience`) name no project.
fn names_another_project(aud: Option<&Value>, project: ProjectId) -> bool {
    let other = |v: &Value| {
        v.as_str()
            .and_then(|a| a.parse::<ProjectId>().ok())
            .is_some_and(|a| a != project)
    };
    match aud {
        Some(Value::Array(list)) => list.iter().any(other),
        Some(v) => other(v),
        None => false,
    }
}

/// A raw-JSON claim and its base64 form (`b64info`/`b64data`, which wins when set). The
/// JSON protocol carries payloads as embedded JSON, so the decoded bytes must be JSON.
fn info_claim(
    claims: &Map<String, Value>,
    key: &str,
    b64_key: &str,
) -> Result<Option<Value>, GatewayTokenError> {
    use base64::Engine as _;
    match claims
        .get(b64_key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| GatewayTokenError::Invalid("b64"))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| GatewayTokenError::Invalid("b64 payload is not JSON"))
        }
        None => Ok(claims.get(key).filter(|v| !v.is_null()).cloned()),
    }
}

/// Parses Centrifugo's `override` object (`{"presence": {"value": true}, …}`).
pub fn overrides(v: Option<&Value>) -> Result<Overrides, GatewayTokenError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Overrides::default());
    };
    let obj = v
        .as_object()
        .ok_or(GatewayTokenError::Invalid("override"))?;
    let flag = |k: &str| -> Result<Option<bool>, GatewayTokenError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(o) => o
                .get("value")
                .and_then(Value::as_bool)
                .map(Some)
                .ok_or(GatewayTokenError::Invalid("override")),
        }
    };
    Ok(Overrides {
        presence: flag("presence")?,
        join_leave: flag("join_leave")?,
        force_push_join_leave: flag("force_push_join_leave")?,
        force_positioning: flag("force_positioning")?,
        force_recovery: flag("force_recovery")?,
    })
}

/// `subs` (per-channel options) or, when that is empty, `channels`.
fn server_subs(claims: &Map<String, Value>) -> Result<Vec<ServerSub>, GatewayTokenError> {
    let bad = GatewayTokenError::Invalid("channels");
    let channel_ok = |c: &str| !c.is_empty() && c.len() <= 1024;
    if let Some(subs) = claims
        .get("subs")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        if subs.len() > MAX_TOKEN_SUBS {
            return Err(bad);
        }
        let mut out = Vec::with_capacity(subs.len());
        for (channel, opts) in subs {
            let opts = opts.as_object().cloned().unwrap_or_default();
            if !channel_ok(channel) {
                return Err(bad);
            }
            out.push(ServerSub {
                channel: channel.clone(),
                info: info_claim(&opts, "info", "b64info")?,
                data: info_claim(&opts, "data", "b64data")?,
                overrides: overrides(opts.get("override"))?,
            });
        }
        return Ok(out);
    }
    match claims.get("channels") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_TOKEN_SUBS => {
            let mut out: Vec<ServerSub> = Vec::with_capacity(list.len());
            for c in list {
                let c = c.as_str().filter(|c| channel_ok(c)).ok_or(bad.clone())?;
                // A channel listed twice is one subscription.
                if !out.iter().any(|s| s.channel == c) {
                    out.push(ServerSub {
                        channel: c.to_owned(),
                        info: None,
                        data: None,
                        overrides: Overrides::default(),
                    });
                }
            }
            Ok(out)
        }
        Some(_) => Err(bad),
    }
}

/// A JWT NumericDate: integer or fractional seconds (RFC 7519 §2), rounded down.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            // In range by the filter above; the fraction is dropped on purpose.
            .map(|f| {
                #[allow(clippy::cast_possible_truncation)]
                let secs = f.floor() as i64;
                secs
            })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tollgate_token::Scopes;
    use tollgate_token::jose::{HeaderExtras, SigningKey};
    use tollgate_token::pubsub::Product;

    use super::*;
    use crate::{Settings, SharedCredentials};

    use crate::tests::NOW;
    const SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!!";

    async fn service(dir: &tempfile::TempDir, project: Option<ProjectId>) -> Tollgate {
        let settings = Settings {
            centrifugo: SharedCredentials {
                hmac_secret: Some(SECRET.to_vec()),
                api_key: None,
                project,
            },
            ..Settings::default()
        };
        crate::tests::service_with(dir, [5; 32], settings)
            .await
            .unwrap()
    }

    async fn project(svc: &Tollgate) -> (ProjectId, crate::Principal) {
        let p = svc
            .create_project("p", Scopes::project_default())
            .await
            .unwrap();
        let principal = svc
            .authenticate(&p.project.id.to_string(), p.api_token.expose())
            .await
            .unwrap();
        (p.project.id, principal)
    }

    /// A PubSub token of the principal's project for `room`.
    async fn pubsub(svc: &Tollgate, principal: &crate::Principal) -> String {
        let body = json!({"ttl": 15, "member_id": "alice",
                          "channels": {"room": {"read": true, "write": true}}});
        svc.issue_realtime_token(principal, Product::PubSub, body.as_object().unwrap())
            .await
            .unwrap()
    }

    /// A token signed with the shared secret (named by its `kid`, as Tollgate mints them).
    fn shared(claims: &Value) -> String {
        let kid = crate::centrifugo::HMAC_KID.parse().unwrap();
        let key = SigningKey::from_secret(Algorithm::HS256, kid, SECRET).unwrap();
        jose::sign(&key, HeaderExtras::default(), claims).unwrap()
    }

    #[tokio::test]
    async fn a_connection_belongs_to_the_project_of_the_key_that_verified_it() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, None).await;
        let (a, pa) = project(&svc).await;
        let (b, pb) = project(&svc).await;
        let grant = svc
            .verify_connection_token(&pubsub(&svc, &pa).await)
            .await
            .unwrap();
        assert_eq!(grant.project, a);
        assert_eq!(grant.typ.as_deref(), Some("PRT"));
        let grant = svc
            .verify_connection_token(&pubsub(&svc, &pb).await)
            .await
            .unwrap();
        assert_eq!(grant.project, b);
        // Refusals are split the way the protocol needs them.
        assert_eq!(
            svc.verify_connection_token("not-a-token").await,
            Err(GatewayTokenError::Invalid("malformed"))
        );
    }

    #[tokio::test]
    async fn the_shared_secret_acts_for_its_one_project_or_for_none() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, None).await;
        let claims = json!({"sub": "u1", "exp": NOW + 60});
        let token = shared(&claims);
        assert_eq!(
            svc.verify_connection_token(&token).await.map(|g| g.project),
            Err(GatewayTokenError::Invalid(
                "shared secret acts for no project"
            )),
            "no project yet"
        );
        let (only, _) = project(&svc).await;
        assert_eq!(
            svc.verify_connection_token(&token).await.unwrap().project,
            only
        );
        // `aud` cannot move it, as a string or in an array.
        for aud in [
            json!(ProjectId::new_random().to_string()),
            json!([only.to_string(), ProjectId::new_random().to_string()]),
        ] {
            let moved = shared(&json!({"sub": "u1", "exp": NOW + 60, "aud": aud}));
            assert_eq!(
                svc.verify_connection_token(&moved).await.map(|g| g.project),
                Err(GatewayTokenError::Invalid("audience"))
            );
        }
        // A second project: the secret acts for none until the setting names one.
        let (second, _) = project(&svc).await;
        assert!(svc.verify_connection_token(&token).await.is_err());
        drop(svc);
        let pinned = service(&dir, Some(second)).await;
        assert_eq!(
            pinned
                .verify_connection_token(&token)
                .await
                .unwrap()
                .project,
            second
        );
        // A forged token never reaches the project question.
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert_eq!(
            pinned
                .verify_connection_token(&forged)
                .await
                .map(|g| g.project),
            Err(GatewayTokenError::Invalid("signature"))
        );
    }

    #[tokio::test]
    async fn a_subscription_token_opens_channels_only_for_its_own_projects_connections() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, None).await;
        let (a, _) = project(&svc).await;
        let (b, _) = project(&svc).await;
        drop(svc);
        // The shared secret bound to A signs A's subscription tokens.
        let svc = service(&dir, Some(a)).await;
        let token = shared(&json!({"sub": "u1", "channel": "room", "exp": NOW + 60}));
        assert!(
            svc.verify_subscription_token(&token, a, "u1", "c1", "room")
                .await
                .is_ok()
        );
        assert_eq!(
            svc.verify_subscription_token(&token, b, "u1", "c1", "room")
                .await,
            Err(GatewayTokenError::Invalid("another project"))
        );
        let expired = shared(&json!({"sub": "u1", "channel": "room", "exp": NOW - 1}));
        assert_eq!(
            svc.verify_subscription_token(&expired, a, "u1", "c1", "room")
                .await,
            Err(GatewayTokenError::Expired)
        );
    }

    #[test]
    fn an_audience_naming_another_project_is_found_in_a_string_or_an_array() {
        let mine = ProjectId::new_random();
        let theirs = ProjectId::new_random().to_string();
        let cases = [
            (None, false),
            (Some(json!(mine.to_string())), false),
            (Some(json!("my-app")), false),
            (Some(json!([mine.to_string(), "my-app"])), false),
            (Some(json!(theirs)), true),
            (Some(json!([mine.to_string(), theirs])), true),
            (Some(json!(["my-app", theirs])), true),
        ];
        for (aud, refused) in cases {
            assert_eq!(
                names_another_project(aud.as_ref(), mine),
                refused,
                "{aud:?}"
            );
        }
    }
}
