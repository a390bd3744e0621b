//! What the WebSocket gateway asks of the token authority: is this connection token
//! genuine, whose is it and what may it do; is this subscription token valid for this
//! user, channel and client. Errors are split the way Centrifugo's client protocol needs
//! them: expired (the client should refresh) versus invalid (terminal).

use std::sync::Arc;

use serde_json::{Map, Value};
use tollgate_token::jose::{self, Algorithm, VerifyingKey};
use tollgate_token::pubsub::Capability;
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

/// A verified connection token.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionGrant {
    pub project: ProjectId,
    /// Centrifugo's user id (`sub`); empty for an anonymous token.
    pub user: String,
    /// When the connection expires (`exp`), if it does.
    pub expires_at: Option<i64>,
    /// Channel capabilities carried by PubSub/Chat tokens.
    pub caps: Vec<Capability>,
    /// Connection info shown to others (`info`).
    pub info: Option<Value>,
}

/// A verified subscription token.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionGrant {
    pub expires_at: Option<i64>,
    pub info: Option<Value>,
}

impl Tollgate {
    /// Finds the key for a token: the shared Centrifugo HMAC secret (whose tokens name
    /// their project in `aud`) or a project key by `kid`. Then verifies the signature.
    async fn gateway_verify(
        &self,
        token: &str,
    ) -> Result<(ProjectId, Map<String, Value>), GatewayTokenError> {
        let header = jose::peek_header(token, MAX_GATEWAY_TOKEN_LEN)
            .map_err(|_| GatewayTokenError::Invalid("malformed"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let hmac_kid = crate::centrifugo::HMAC_KID;
        let (key, project): (Arc<VerifyingKey>, Option<ProjectId>) =
            match (kid, &self.inner.settings.centrifugo_hmac_secret) {
                (Some(k), Some(secret)) if k == hmac_kid => (
                    Arc::new(
                        VerifyingKey::hmac(
                            Algorithm::HS256,
                            hmac_kid
                                .parse::<KeyId>()
                                .map_err(|_| GatewayTokenError::Invalid("kid"))?,
                            secret,
                        )
                        .map_err(|_| GatewayTokenError::Invalid("hmac"))?,
                    ),
                    None,
                ),
                (Some(k), _) => {
                    let kid: KeyId = k.parse().map_err(|_| GatewayTokenError::Invalid("kid"))?;
                    let (key, project) = self
                        .project_key(&kid)
                        .await?
                        .ok_or(GatewayTokenError::Invalid("unknown key"))?;
                    (key, Some(project))
                }
                (None, _) => return Err(GatewayTokenError::Invalid("no kid")),
            };
        let verified = jose::verify_pinned(token, MAX_GATEWAY_TOKEN_LEN, &key)
            .map_err(|_| GatewayTokenError::Invalid("signature"))?;
        let claims = verified.claims;
        let aud = claims
            .get("aud")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<ProjectId>().ok());
        // A project key binds its project; a shared secret needs the token to say which.
        let project = match (project, aud) {
            (Some(p), Some(a)) if p != a => return Err(GatewayTokenError::Invalid("audience")),
            (Some(p), _) => p,
            (None, Some(a)) => a,
            (None, None) => return Err(GatewayTokenError::Invalid("no project")),
        };
        Ok((project, claims))
    }

    fn check_times(&self, claims: &Map<String, Value>) -> Result<Option<i64>, GatewayTokenError> {
        let now = self.inner.clock.now();
        let exp = match claims.get("exp") {
            None => None,
            Some(v) => Some(v.as_i64().ok_or(GatewayTokenError::Invalid("exp"))?),
        };
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or(GatewayTokenError::Invalid("nbf"))?;
            if nbf > now.seconds() {
                return Err(GatewayTokenError::Expired);
            }
        }
        if exp.is_some_and(|e| e <= now.seconds()) {
            return Err(GatewayTokenError::Expired);
        }
        Ok(exp)
    }

    /// Verifies a connection token: a Centrifugo connection JWT or a PubSub/Chat token.
    /// A token with a `channel` claim is a subscription token and is refused here.
    pub async fn verify_connection_token(
        &self,
        token: &str,
    ) -> Result<ConnectionGrant, GatewayTokenError> {
        let (project, claims) = self.gateway_verify(token).await?;
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
        let expires_at = self.check_times(&claims)?;
        Ok(ConnectionGrant {
            project,
            user,
            expires_at,
            caps,
            info: claims.get("info").cloned(),
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
        let (token_project, claims) = self.gateway_verify(token).await?;
        let claim = |k: &str| claims.get(k).and_then(Value::as_str);
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
        let expires_at = self.check_times(&claims)?;
        Ok(SubscriptionGrant {
            expires_at,
            info: claims.get("info").cloned(),
        })
    }

    /// The current time, for the gateway's timers.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.inner.clock.now()
    }
}
